"""Unit tests of the Prometheus text exposition."""

from __future__ import annotations

import pytest

from keysvc.metrics import Counter, Histogram, Metrics


def test_counters_render_with_labels() -> None:
    """Counters render HELP, TYPE and one sample per label set."""
    metrics = Metrics()
    metrics.keys_issued.inc()
    metrics.keys_issued.inc()
    metrics.refusals.inc("expired")
    text = metrics.render()
    assert "# TYPE keysvc_keys_issued_total counter\nkeysvc_keys_issued_total 2\n" in text
    assert 'keysvc_refusals_total{reason="expired"} 1\n' in text
    assert "keysvc_grants_total 0\n" in text


def test_histogram_buckets_are_cumulative() -> None:
    """Histogram buckets count observations at or below each bound, with sum and count."""
    hist = Histogram("h", "help", ["route"], buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value, "/x")
    lines = hist.render()
    assert 'h_bucket{route="/x",le="0.1"} 2' in lines
    assert 'h_bucket{route="/x",le="1"} 3' in lines
    assert 'h_bucket{route="/x",le="+Inf"} 4' in lines
    assert 'h_sum{route="/x"} 3.65' in lines
    assert 'h_count{route="/x"} 4' in lines
    assert hist.count("/x") == 4


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in label values cannot break the format."""
    counter = Counter("c", "help", ["reason"])
    counter.inc('a"b\\c\nd')
    assert 'c{reason="a\\"b\\\\c\\nd"} 1' in counter.render()


def test_wrong_label_count_is_an_error() -> None:
    """A sample with the wrong number of labels is refused, not silently mislabelled."""
    with pytest.raises(ValueError, match="labels"):
        Counter("c", "help", ["a"]).inc()
