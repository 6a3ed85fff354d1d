"""Unit tests of the per-source token bucket for failed authentications."""

from __future__ import annotations

import pytest

from keysvc.http.ratelimit import FailureLimiter

T0 = 1_800_000_000.0


def spend(limiter: FailureLimiter, source: str, times: int, now: float = T0) -> None:
    """Record ``times`` failures of ``source``."""
    for _ in range(times):
        limiter.failed(source, now)


def test_a_burst_is_allowed_then_refused() -> None:
    """After ``burst`` failures the source is refused, with a Retry-After."""
    limiter = FailureLimiter(burst=3, per_second=0.5)
    spend(limiter, "10.0.0.1", 2)
    assert limiter.check("10.0.0.1", T0).allowed
    spend(limiter, "10.0.0.1", 1)
    verdict = limiter.check("10.0.0.1", T0)
    assert not verdict.allowed
    assert verdict.retry_after == 2


def test_other_sources_are_unaffected() -> None:
    """One source running dry does not touch another."""
    limiter = FailureLimiter(burst=2, per_second=0.1)
    spend(limiter, "10.0.0.1", 50)
    assert not limiter.check("10.0.0.1", T0).allowed
    assert limiter.check("10.0.0.2", T0).allowed


def test_tokens_come_back_with_time() -> None:
    """A refused source may try again once a token has refilled."""
    limiter = FailureLimiter(burst=2, per_second=0.5)
    spend(limiter, "s", 2)
    assert not limiter.check("s", T0 + 1.9).allowed
    assert limiter.check("s", T0 + 2.0).allowed


def test_first_refusal_is_flagged_once_per_lockout() -> None:
    """Only the first refusal of a lockout is flagged, so the audit gets one record, not one per request."""
    limiter = FailureLimiter(burst=1, per_second=1.0)
    spend(limiter, "s", 1)
    assert limiter.check("s", T0).first_refusal
    assert not limiter.check("s", T0).first_refusal
    assert limiter.check("s", T0 + 1).allowed
    spend(limiter, "s", 1, now=T0 + 1)
    assert limiter.check("s", T0 + 1).first_refusal


def test_full_buckets_are_forgotten_and_memory_is_bounded() -> None:
    """Refilled buckets are dropped and at most ``max_sources`` are kept."""
    limiter = FailureLimiter(burst=2, per_second=1.0, max_sources=3)
    for index in range(10):
        limiter.failed(f"10.0.0.{index}", T0)
    assert limiter.tracked() == 3
    assert limiter.check("10.0.0.9", T0 + 5).allowed
    assert limiter.tracked() == 2


def test_bad_parameters_are_refused() -> None:
    """A limiter must have a positive burst and rate."""
    with pytest.raises(ValueError, match="positive"):
        FailureLimiter(burst=0)
