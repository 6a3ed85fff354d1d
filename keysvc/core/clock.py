"""Clocks. The core never reads the time itself: it is handed a :class:`Clock` or a ``now``."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time as seconds since the Unix epoch (UTC)."""

    def now(self) -> float:
        """Return the current time."""
        ...


class SystemClock:
    """The wall clock of this machine."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the clock's current reading."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self._now += seconds

    def set(self, now: float) -> None:
        """Set the clock to ``now``."""
        self._now = now
