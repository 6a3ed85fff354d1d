"""The metrics registry: every series present at zero, observers counting, and promtool accepting the text."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from keysvc.errors import StoreUnavailable
from keysvc.metrics import EVENT_OUTCOMES, REVOCATION_CHANNELS, Metrics
from keysvc.wire.results import Reason


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``promtool check metrics`` on an exposition document."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run .ci/bootstrap (Debian package prometheus)"
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_labelled_counter_starts_at_zero() -> None:
    """Before anything happens, each reason, channel, outcome and sweep result is a 0 series."""
    text = Metrics().render()
    for reason in Reason:
        assert f'keysvc_refusals_total{{reason="{reason.value}"}} 0.0\n' in text
    for channel in REVOCATION_CHANNELS:
        assert f'keysvc_revocations_total{{reason="{channel}"}} 0.0\n' in text
    for outcome in EVENT_OUTCOMES:
        assert f'keysvc_events_total{{outcome="{outcome}"}} 0.0\n' in text
    assert 'keysvc_sweeps_total{result="error"} 0.0\n' in text
    assert "keysvc_expirations_total 0.0\n" in text
    assert 'keysvc_build_info{python="' in text
    assert "process_resident_memory_bytes" in text


def test_observers_count_what_the_service_reports() -> None:
    """Revocations by channel, expiries, sweeps and event outcomes land in their series."""
    metrics = Metrics()
    metrics.revoked("cli", 2)
    metrics.revoked("nonsense", 1)
    metrics.expired(3)
    metrics.swept(ok=True)
    metrics.swept(ok=False)
    metrics.event("revoked", 4.0)
    metrics.event("malformed", None)
    assert metrics.revocations.value("cli") == 2
    assert metrics.revocations.value("api") == 1
    assert metrics.expirations.value() == 3
    assert (metrics.sweeps.value("ok"), metrics.sweeps.value("error")) == (1, 1)
    assert (metrics.events.value("revoked"), metrics.events.value("malformed")) == (1, 1)
    text = metrics.render()
    assert "keysvc_event_last_age_seconds 4.0\n" in text
    assert "keysvc_event_age_seconds_count 1.0\n" in text


def test_store_gauges_are_read_at_scrape_time() -> None:
    """The live-keys and audit-head gauges come from the store each scrape, and vanish if it is down."""
    metrics = Metrics()
    answers: list[tuple[int, int] | None] = [(3, 17), (2, 18), None]

    def stats() -> tuple[int, int]:
        answer = answers.pop(0)
        if answer is None:
            raise StoreUnavailable("database down")
        return answer

    metrics.watch_store(stats)
    assert "keysvc_live_keys 3.0\n" in metrics.render()
    second = metrics.render()
    assert "keysvc_live_keys 2.0\n" in second
    assert "keysvc_audit_head_seq 18.0\n" in second
    third = metrics.render()
    assert "keysvc_live_keys" not in third
    assert "keysvc_keys_issued_total" in third


def test_promtool_accepts_the_exposition() -> None:
    """``promtool check metrics`` finds no problem in a registry that has seen traffic."""
    metrics = Metrics()
    metrics.request_seconds.observe(0.02, "GET", "/v1/admin/keys/{key_id}", "200")
    metrics.refusals.inc("expired")
    metrics.watch_store(lambda: (1, 2))
    result = promtool_check(metrics.render())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_promtool_would_catch_a_bad_metric() -> None:
    """The promtool check is not vacuous: a counter without _total is reported."""
    result = promtool_check("# HELP bad A counter.\n# TYPE bad counter\nbad 1\n")
    assert "counter metrics should have" in result.stdout + result.stderr


@pytest.mark.parametrize("labels", [("a",), ("a", "b")])
def test_wrong_label_count_is_an_error(labels: tuple[str, ...]) -> None:
    """A sample with the wrong number of labels is refused, not silently mislabelled."""
    with pytest.raises(ValueError, match="label"):
        Metrics().refusals.inc(*labels[1:] if len(labels) == 1 else labels)
