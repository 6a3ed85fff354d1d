"""Unit tests of agent.lifetime: the one-hour budget across restarts and reboots, bounds, refusal verdicts."""

from __future__ import annotations

import errno
import json
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent import lifetime
from agent.errors import StateCorrupt
from agent.lifetime import (
    BUDGET_SECONDS,
    HEARTBEAT_SECONDS,
    LIFETIME_FILE,
    MIN_TIMEOUT_SECONDS,
    Ledger,
    Lifetime,
    UntilDeadline,
    refusal_verdict,
    resume,
    seconds_left,
    used,
)
from agent.transport import Response
from tests.agent.fakes import Scripted


def test_a_first_start_begins_the_budget_at_that_point() -> None:
    """The first start at BOOTTIME 100 leaves exactly 3600 s, and 1 s at 3699 s, none at 3700 s."""
    ledger = resume(None, "k", "boot-a", 100.0)
    assert seconds_left(ledger, 100.0, wall_now=0.0, expires_at=None) == 3600.0
    assert seconds_left(ledger, 3699.0, wall_now=0.0, expires_at=None) == 1.0
    assert seconds_left(ledger, 3700.0, wall_now=0.0, expires_at=None) == 0.0


def test_a_restart_within_one_boot_keeps_the_first_start() -> None:
    """Restarting at BOOTTIME 1000 in the same boot does not reset the budget."""
    first = resume(None, "k", "boot-a", 100.0)
    again = resume(first, "k", "boot-a", 1000.0)
    assert again.boot_start == 100.0
    assert used(again, 1000.0) == 900.0


def test_a_reboot_carries_over_what_was_used_and_counts_the_new_boot_from_zero() -> None:
    """500 s used before a reboot, then 40 s into the new boot: 540 s used."""
    first = resume(None, "k", "boot-a", 100.0)
    beat = replace(first, last_seen=600.0)
    after = resume(beat, "k", "boot-b", 40.0)
    assert (after.boot_id, after.boot_start, after.used_before) == ("boot-b", 0.0, 500.0)
    assert used(after, 40.0) == 540.0


def test_boottime_going_backwards_counts_as_a_reboot_even_with_an_unknown_boot_id() -> None:
    """Without a boot id, BOOTTIME smaller than the last heartbeat still means a new boot."""
    first = Ledger("k", "unknown", boot_start=100.0, used_before=0.0, last_seen=700.0)
    after = resume(first, "k", "unknown", 5.0)
    assert after.used_before == 600.0
    assert after.boot_start == 0.0


def test_a_new_key_starts_a_new_budget() -> None:
    """A ledger for another key id is replaced, not continued."""
    old = Ledger("old", "boot-a", boot_start=0.0, used_before=3000.0, last_seen=100.0)
    assert used(resume(old, "new", "boot-a", 200.0), 200.0) == 0.0


def test_the_rendered_expiry_is_an_upper_bound_by_the_wall_clock() -> None:
    """An expiry 90 s away by the wall clock wins over the fresh one-hour budget, and vice versa."""
    ledger = resume(None, "k", "b", 0.0)
    assert seconds_left(ledger, 0.0, wall_now=1000.0, expires_at=1090.0) == 90.0
    assert seconds_left(ledger, 0.0, wall_now=1000.0, expires_at=1000.0 + 7200) == BUDGET_SECONDS


@pytest.mark.parametrize(
    ("ended", "accepted", "past", "verdict"),
    [
        ("expired", False, False, "expired"),
        ("revoked", False, False, "refused"),
        (None, True, False, "refused"),
        (None, False, True, "expired"),
        (None, False, False, None),
    ],
)
def test_refusal_verdicts(ended: str | None, accepted: bool, past: bool, verdict: str | None) -> None:
    """Only keysvc's final answer, an earlier acceptance by this endpoint or a spent life end the key."""
    assert refusal_verdict(ended, accepted_before=accepted, past_deadline=past) == verdict


class Clock:
    """A settable BOOTTIME."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        """Read the clock."""
        return self.now


def test_the_ledger_file_survives_restarts_and_reboots(tmp_path: Path) -> None:
    """Written at start, heartbeat and acceptance; read back by the next run in another boot."""
    clock, boot = Clock(50.0), ["boot-a"]
    life = Lifetime(tmp_path, "k", boottime=clock, boot_id=lambda: boot[0]).start()
    assert (tmp_path / LIFETIME_FILE).stat().st_mode & 0o777 == 0o600
    clock.now = 50.0 + HEARTBEAT_SECONDS
    life.heartbeat()
    life.accepted("https://keysvc")
    clock.now, boot[0] = 10.0, "boot-b"
    again = Lifetime(tmp_path, "k", boottime=clock, boot_id=lambda: boot[0]).start()
    assert again.ledger.used_before == HEARTBEAT_SECONDS
    assert again.ledger.accepted_by == "https://keysvc"
    assert again.seconds_left(wall_now=0.0, expires_at=None) == BUDGET_SECONDS - HEARTBEAT_SECONDS - 10.0


def test_heartbeats_are_written_at_most_every_interval(tmp_path: Path) -> None:
    """A heartbeat sooner than HEARTBEAT_SECONDS after the last write does not touch the file."""
    clock = Clock(0.0)
    life = Lifetime(tmp_path, "k", boottime=clock, boot_id=lambda: "b").start()
    clock.now = HEARTBEAT_SECONDS - 1
    life.heartbeat()
    assert json.loads((tmp_path / LIFETIME_FILE).read_bytes())["last_seen"] == 0.0
    clock.now = HEARTBEAT_SECONDS
    life.heartbeat()
    assert json.loads((tmp_path / LIFETIME_FILE).read_bytes())["last_seen"] == HEARTBEAT_SECONDS


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"version": 2}', b'{"version": 1, "key_id": "k"}'])
def test_a_damaged_ledger_is_state_corrupt(tmp_path: Path, content: bytes) -> None:
    """A ledger that cannot be trusted stops the agent (exit 2) instead of silently resetting the budget."""
    (tmp_path / LIFETIME_FILE).write_bytes(content)
    with pytest.raises(StateCorrupt, match="lifetime file"):
        Lifetime(tmp_path, "k", boottime=lambda: 0.0, boot_id=lambda: "b").start()


def test_a_heartbeat_that_cannot_be_written_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at a heartbeat or an acceptance logs lifetime_not_saved and keeps the ledger in memory."""
    clock = Clock(0.0)
    life = Lifetime(tmp_path, "k", boottime=clock, boot_id=lambda: "b").start()

    def full(_path: Path, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lifetime, "atomic_write", full)
    clock.now = HEARTBEAT_SECONDS
    with capture_logs() as logs:
        life.heartbeat()
        life.accepted("https://keysvc")
    assert [e["event"] for e in logs] == ["lifetime_not_saved", "lifetime_not_saved"]
    assert life.ledger.accepted_by == "https://keysvc"


def test_no_answer_is_awaited_past_the_deadline() -> None:
    """With 100 s left the 30 s timeout stands; with 4.5 s left it is 4.5 s; past the deadline it is 1 s."""
    inner, now = Scripted(*[Response(200, {}, b"")] * 3), [0.0]
    requester = UntilDeadline(inner, lambda: 100.0, 30.0, monotonic=lambda: now[0])
    for now[0] in (0.0, 95.5, 130.0):
        requester.request("POST", "https://keysvc/v1/ingest/grants")
    requester.close()
    assert inner.timeouts == [30.0, 4.5, MIN_TIMEOUT_SECONDS]
    assert inner.closed
