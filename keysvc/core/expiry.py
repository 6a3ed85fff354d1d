"""Key lifetime arithmetic. Pure: every function takes ``now``.

A key expires exactly ``ttl`` seconds after its AddNode began and is never renewed. With the default
TTL of 3600 s it is valid at 3599 s and refused at 3600 s. Configuration may shorten the TTL, never
lengthen it.
"""

from __future__ import annotations

from keysvc.errors import ConfigError

MAX_TTL_SECONDS = 3600


def checked_ttl(ttl_seconds: int) -> int:
    """Return ``ttl_seconds`` if it is a usable key lifetime, else raise :class:`ConfigError`."""
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ConfigError(f"key TTL must be between 1 and {MAX_TTL_SECONDS} seconds, got {ttl_seconds}")
    return ttl_seconds


def expires_at(started_at: float, ttl_seconds: int = MAX_TTL_SECONDS) -> float:
    """Return when a key for an AddNode that began at ``started_at`` stops being valid."""
    return started_at + checked_ttl(ttl_seconds)


def is_expired(now: float, expires: float) -> bool:
    """Return True once ``now`` has reached ``expires``: the boundary second itself is expired."""
    return now >= expires


def remaining(now: float, expires: float) -> float:
    """Return the seconds of life left, never negative."""
    return max(0.0, expires - now)
