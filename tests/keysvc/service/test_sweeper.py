"""The background sweeper thread: sweeps on its interval, survives store errors, stops on request."""

from __future__ import annotations

import threading

import pytest

from keysvc.core.clock import ManualClock
from keysvc.core.models import AddNode, EventType
from keysvc.errors import StoreUnavailable
from keysvc.service.keys import KeyService
from keysvc.service.sweeper import Sweeper


class CountingService:
    """A stand-in for the key service that counts sweeps and can fail."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.swept = threading.Event()

    def sweep(self) -> list[str]:
        """Count the call; fail the first ``fail_first`` times."""
        self.calls += 1
        if self.calls <= self.fail_first:
            raise StoreUnavailable("down")
        if self.calls >= 3:
            self.swept.set()
        return [f"k{self.calls}"]


def test_sweeps_repeatedly_until_stopped() -> None:
    """The thread sweeps on each tick and exits promptly when stopped."""
    service = CountingService()
    sweeper = Sweeper(service, interval=0.01)
    thread = sweeper.start()
    assert service.swept.wait(5)
    sweeper.stop()
    assert not thread.is_alive()
    calls = service.calls
    assert calls >= 3
    assert sweeper.sweeps == calls


def test_store_errors_do_not_kill_the_thread() -> None:
    """A failing sweep is logged and the next tick sweeps again."""
    service = CountingService(fail_first=2)
    sweeper = Sweeper(service, interval=0.01)
    assert sweeper.run_once() == []
    sweeper.start()
    assert service.swept.wait(5)
    sweeper.stop()


def test_injected_stop_event() -> None:
    """An already-set stop event makes run() sweep once and return."""
    stop = threading.Event()
    stop.set()
    service = CountingService()
    Sweeper(service, interval=60, stop=stop).run()
    assert service.calls == 1


def test_interval_must_be_positive() -> None:
    """A zero interval would busy-loop and is refused."""
    with pytest.raises(ValueError, match="positive"):
        Sweeper(CountingService(), interval=0)


def test_sweeper_expires_keys_of_a_real_service(service: KeyService, clock: ManualClock) -> None:
    """Run against the key service, the sweeper thread expires a key once its hour is over."""
    issued = service.add_node(
        AddNode("prod", "node-1", "i-0123456789abcdef0", "eu", "op-1", clock.now()), actor="test"
    )
    clock.advance(3600)
    sweeper = Sweeper(service, interval=0.01)
    sweeper.start()
    try:
        wait_for = threading.Event()
        for _ in range(500):
            if service.audit.records(event=EventType.EXPIRED):
                break
            wait_for.wait(0.01)
    finally:
        sweeper.stop()
    assert [r.event.key_id for r in service.audit.records(event=EventType.EXPIRED)] == [issued.record.key_id]
    assert service.get_key(issued.record.key_id).key_hash is None
