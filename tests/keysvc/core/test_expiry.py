"""Key lifetime arithmetic: valid at 3599 s, expired at 3600 s, never longer than an hour."""

from __future__ import annotations

import pytest

from keysvc.core import expiry
from keysvc.errors import ConfigError

T0 = 1_800_000_000.0


def test_boundary_second() -> None:
    """A key is valid one second before expires_at and expired exactly at it."""
    end = expiry.expires_at(T0)
    assert end == T0 + 3600
    assert not expiry.is_expired(T0 + 3599, end)
    assert not expiry.is_expired(T0 + 3599.999, end)
    assert expiry.is_expired(T0 + 3600, end)
    assert expiry.is_expired(T0 + 7200, end)


def test_remaining_never_negative() -> None:
    """Remaining life counts down to zero and stays there."""
    end = expiry.expires_at(T0)
    assert expiry.remaining(T0, end) == 3600
    assert expiry.remaining(T0 + 3599, end) == 1
    assert expiry.remaining(T0 + 5000, end) == 0


def test_ttl_may_shorten_never_lengthen() -> None:
    """A TTL of 1..3600 s is accepted; 0, negative or longer is a configuration error."""
    assert expiry.expires_at(T0, 60) == T0 + 60
    assert expiry.checked_ttl(1) == 1
    for bad in (0, -1, 3601, 86400):
        with pytest.raises(ConfigError):
            expiry.checked_ttl(bad)
