"""Service metrics in the Prometheus text exposition format (version 0.0.4). No I/O; thread-safe.

Exposed at ``GET /metrics``::

    keysvc_keys_issued_total                      keys minted by AddNode
    keysvc_grants_total                           signed upload URLs handed out
    keysvc_refusals_total{reason}                 refused credentials and requests, by audit reason
    keysvc_revocations_total{reason}              keys revoked over HTTP, by reason
    keysvc_http_request_duration_seconds{method,route,status}   request latency histogram

Label values are bounded: routes are templates (``/v1/admin/keys/{key_id}``), never raw paths,
and reasons come from a fixed vocabulary.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the count of ``labels``."""
        if len(labels) != len(self.labelnames) or amount < 0:
            raise ValueError(f"{self.name}: wrong labels or negative amount")
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        """Return the current count of ``labels``."""
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        """Return the exposition lines of this counter."""
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not items and not self.labelnames:
            items = [((), 0.0)]
        lines += [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]
        return lines


class Histogram:
    """Observations counted into fixed buckets per label set, with their sum and count."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        """Record one observation of ``value`` for ``labels``."""
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: wrong labels")
        with self._lock:
            counts, total = self._series.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            total[0] += value

    def count(self, *labels: str) -> int:
        """Return how many observations ``labels`` has."""
        with self._lock:
            series = self._series.get(labels)
            return sum(series[0]) if series else 0

    def render(self) -> list[str]:
        """Return the exposition lines of this histogram (cumulative buckets)."""
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._series.items())
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, (counts, total) in items:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = _labels(self.labelnames, labels, f'le="{_number(bound)}"')
                lines.append(f"{self.name}_bucket{le} {running}")
            plain = _labels(self.labelnames, labels)
            lines += [f"{self.name}_sum{plain} {_number(total)}", f"{self.name}_count{plain} {running}"]
        return lines


class Metrics:
    """Every metric keysvc's HTTP service exposes."""

    def __init__(self) -> None:
        self.keys_issued = Counter("keysvc_keys_issued_total", "Ingest keys minted by AddNode.")
        self.grants = Counter("keysvc_grants_total", "Signed upload URLs handed out.")
        self.refusals = Counter(
            "keysvc_refusals_total", "Refused credentials and requests, by audit reason.", ["reason"]
        )
        self.revocations = Counter(
            "keysvc_revocations_total", "Keys revoked over HTTP, by reason.", ["reason"]
        )
        self.request_seconds = Histogram(
            "keysvc_http_request_duration_seconds",
            "HTTP request latency in seconds.",
            ["method", "route", "status"],
        )

    def render(self) -> str:
        """Return the whole exposition document."""
        lines: list[str] = []
        for metric in (self.keys_issued, self.grants, self.refusals, self.revocations, self.request_seconds):
            lines += metric.render()
        return "\n".join(lines) + "\n"
