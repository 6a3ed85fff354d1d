"""The in-process sweeper: expire keys on a schedule, in a background thread of ``keysvc serve``.

The interval and the stop :class:`threading.Event` are injected, so tests run it without sleeping long.
A failed sweep is logged and retried at the next tick; the thread never dies of a store error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import structlog

from keysvc.errors import KeysvcError

log = structlog.get_logger()


class Sweepable(Protocol):
    """Anything with a ``sweep()`` that expires keys and returns their ids (the key service)."""

    def sweep(self) -> list[str]:
        """Expire what is due."""
        ...


class Sweeper:
    """Calls ``service.sweep()`` every ``interval`` seconds until ``stop`` is set."""

    def __init__(
        self,
        service: Sweepable,
        interval: float,
        stop: threading.Event | None = None,
        on_sweep: Callable[[bool], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("sweep interval must be positive")
        self._service = service
        self._interval = interval
        self.stop_event = stop if stop is not None else threading.Event()
        self._thread: threading.Thread | None = None
        self._on_sweep = on_sweep
        self.sweeps = 0

    def run_once(self) -> list[str]:
        """Sweep now; a keysvc error is logged, not raised."""
        try:
            expired = self._service.sweep()
        except KeysvcError as exc:
            log.warning("sweep_failed", error=type(exc).__name__, message=str(exc))
            self._report(ok=False)
            return []
        finally:
            self.sweeps += 1
        self._report(ok=True)
        if expired:
            log.info("sweep_expired", count=len(expired))
        return expired

    def _report(self, *, ok: bool) -> None:
        if self._on_sweep is not None:
            self._on_sweep(ok)

    def run(self) -> None:
        """Sweep at once, then every interval, until stopped."""
        self.run_once()
        while not self.stop_event.wait(self._interval):
            self.run_once()

    def start(self) -> threading.Thread:
        """Run in a daemon thread and return it."""
        self._thread = threading.Thread(target=self.run, name="keysvc-sweeper", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to stop and wait for it."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
