"""keysvc's Prometheus metrics, on ``prometheus_client``, one registry per :class:`Metrics`.

Exposed at ``GET /metrics`` (and by ``keysvc events consume --metrics-port``)::

    keysvc_build_info{version,python}                  1
    keysvc_keys_issued_total                           keys minted by AddNode
    keysvc_grants_total                                signed upload URLs handed out
    keysvc_refusals_total{reason}                      refused credentials and requests, by audit reason
    keysvc_revocations_total{reason}                   keys revoked, by channel: superseded, terminated,
                                                       admin, events, cli, api
    keysvc_expirations_total                           keys expired by the sweeper
    keysvc_sweeps_total{result}                        sweeper runs: ok, error
    keysvc_sweep_last_success_timestamp_seconds        when a sweep last succeeded
    keysvc_events_total{outcome}                       termination-event messages: revoked, ignored,
                                                       malformed, failed
    keysvc_event_age_seconds                           histogram: message age (SQS SentTimestamp) when handled
    keysvc_event_last_age_seconds                      the age of the last message handled
    keysvc_live_keys                                   live, unexpired keys in the store (read at scrape)
    keysvc_audit_head_seq                              the signed audit head's sequence number (at scrape)
    keysvc_audit_chain_ok                              1 after a verification passed, 0 after one failed
    keysvc_ready                                       1 when /readyz would answer 200 (at scrape)
    keysvc_http_request_duration_seconds{method,route,status}   request latency histogram
    process_*, python_*                                the process: CPU, memory, open fds, start time, GC

Every labelled counter exists at zero from the start, for every value its label can take (routes,
methods and statuses of the latency histogram appear with their first request). Label values are
bounded: routes are templates, never raw paths; reasons and channels come from fixed vocabularies.
Metrics are plain ``prometheus_client`` objects, so a multiprocess mode can aggregate them later.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from keysvc.wire.results import Reason

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format generate_latest() writes
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
REVOCATION_CHANNELS = ("superseded", "terminated", "admin", "events", "cli", "api")
EVENT_OUTCOMES = ("revoked", "ignored", "malformed", "failed")
SWEEP_RESULTS = ("ok", "error")


class LabelledCounter:
    """A counter whose label values are passed positionally: ``inc("malformed")``, ``value("malformed")``."""

    def __init__(self, counter: prometheus_client.Counter, preset: Sequence[Sequence[str]] = ()) -> None:
        self._counter = counter
        for labels in preset:
            counter.labels(*labels)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the count of ``labels``."""
        (self._counter.labels(*labels) if labels else self._counter).inc(amount)

    def value(self, *labels: str) -> float:
        """The current count of ``labels``."""
        child = self._counter.labels(*labels) if labels else self._counter
        return float(child._value.get())


class LabelledHistogram:
    """A histogram whose label values are passed positionally after the observation."""

    def __init__(self, histogram: prometheus_client.Histogram) -> None:
        self._histogram = histogram

    def observe(self, value: float, *labels: str) -> None:
        """Record one observation for ``labels``."""
        (self._histogram.labels(*labels) if labels else self._histogram).observe(value)

    def count(self, *labels: str) -> int:
        """How many observations ``labels`` has."""
        child = self._histogram.labels(*labels) if labels else self._histogram
        return int(sum(b.get() for b in child._buckets))


def _package_version() -> str:
    try:
        return version("nodelogs")
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    """Every metric one keysvc process exposes; it is also the service's observer of keys and events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        prometheus_client.ProcessCollector(registry=r)
        prometheus_client.PlatformCollector(registry=r)
        prometheus_client.GCCollector(registry=r)
        info = prometheus_client.Info("keysvc_build", "The running keysvc.", registry=r)
        info.info({"version": _package_version(), "python": platform.python_version()})
        counter = prometheus_client.Counter
        self.keys_issued = LabelledCounter(counter("keysvc_keys_issued", "Ingest keys minted.", registry=r))
        self.grants = LabelledCounter(counter("keysvc_grants", "Signed upload URLs handed out.", registry=r))
        self.refusals = LabelledCounter(
            counter(
                "keysvc_refusals",
                "Refused credentials and requests, by audit reason.",
                ["reason"],
                registry=r,
            ),
            [(reason.value,) for reason in Reason],
        )
        self.revocations = LabelledCounter(
            counter("keysvc_revocations", "Keys revoked, by channel.", ["reason"], registry=r),
            [(channel,) for channel in REVOCATION_CHANNELS],
        )
        self.expirations = LabelledCounter(
            counter("keysvc_expirations", "Keys expired by sweeps.", registry=r)
        )
        self.sweeps = LabelledCounter(
            counter("keysvc_sweeps", "Sweeper runs, by result.", ["result"], registry=r),
            [(result,) for result in SWEEP_RESULTS],
        )
        self.sweep_success = prometheus_client.Gauge(
            "keysvc_sweep_last_success_timestamp_seconds", "When a sweep last succeeded.", registry=r
        )
        self.events = LabelledCounter(
            counter(
                "keysvc_events", "Termination-event messages handled, by outcome.", ["outcome"], registry=r
            ),
            [(outcome,) for outcome in EVENT_OUTCOMES],
        )
        self.event_age = prometheus_client.Histogram(
            "keysvc_event_age_seconds", "Age of event messages when handled.", buckets=AGE_BUCKETS, registry=r
        )
        self.event_last_age = prometheus_client.Gauge(
            "keysvc_event_last_age_seconds", "Age of the last event message handled.", registry=r
        )
        self.audit_chain_ok = prometheus_client.Gauge(
            "keysvc_audit_chain_ok",
            "1 after an audit chain verification passed, 0 after one failed.",
            registry=r,
        )
        self.audit_chain_ok.set(1)
        self.request_seconds = LabelledHistogram(
            prometheus_client.Histogram(
                "keysvc_http_request_duration_seconds", "HTTP request latency in seconds.",
                ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r,
            )
        )  # fmt: skip

    # -- the service's observers (KeyObserver, EventObserver) -----------------------------------

    def revoked(self, channel: str, count: int) -> None:
        """Count ``count`` revocations through ``channel``."""
        self.revocations.inc(channel if channel in REVOCATION_CHANNELS else "api", amount=count)

    def expired(self, count: int) -> None:
        """Count ``count`` expiries."""
        self.expirations.inc(amount=count)

    def swept(self, ok: bool) -> None:
        """Count one sweeper run."""
        self.sweeps.inc("ok" if ok else "error")
        if ok:
            self.sweep_success.set(time.time())

    def event(self, outcome: str, age_seconds: float | None) -> None:
        """Count one event message and its age."""
        self.events.inc(outcome if outcome in EVENT_OUTCOMES else "failed")
        if age_seconds is not None:
            self.event_age.observe(max(0.0, age_seconds))
            self.event_last_age.set(max(0.0, age_seconds))

    def watch_store(self, stats: Callable[[], tuple[int, int]]) -> None:
        """Read ``(live keys, audit head seq)`` from the store at every scrape."""
        self.registry.register(_StoreCollector(stats))

    def watch_readiness(self, check: Callable[[], None]) -> None:
        """``keysvc_ready``: 1 when ``check()`` returns at scrape time, 0 when it raises a keysvc error."""
        self.registry.register(_ReadyCollector(check))

    def render(self) -> str:
        """The whole exposition document."""
        return prometheus_client.generate_latest(self.registry).decode("utf-8")


class _StoreCollector(Collector):
    """Gauges read from the store when scraped; a store that cannot answer leaves them out."""

    def __init__(self, stats: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats

    def describe(self) -> list[Any]:
        """Nothing to describe up front (describing would query the store at registration)."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the live-keys and audit-head gauges."""
        from keysvc.errors import KeysvcError  # noqa: PLC0415 - keep the import graph flat

        try:
            live, head = self._stats()
        except KeysvcError:
            return
        yield GaugeMetricFamily("keysvc_live_keys", "Live, unexpired ingest keys in the store.", value=live)
        yield GaugeMetricFamily(
            "keysvc_audit_head_seq", "Sequence number of the signed audit head.", value=head
        )


class _ReadyCollector(Collector):
    """``keysvc_ready``, what ``/readyz`` would answer, evaluated at scrape."""

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check

    def describe(self) -> list[Any]:
        """Nothing up front (describing would run the check at registration)."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield 1 when ready, else 0."""
        from keysvc.errors import KeysvcError  # noqa: PLC0415

        try:
            self._check()
        except KeysvcError:
            ready = 0
        else:
            ready = 1
        yield GaugeMetricFamily("keysvc_ready", "1 when the store and the URL signer are ready.", value=ready)
