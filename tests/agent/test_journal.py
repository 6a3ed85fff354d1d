"""JournalSpool against the real journalctl reading real journal files made by systemd-journal-remote."""

from __future__ import annotations

import uuid
from pathlib import Path

from structlog.testing import capture_logs

from agent.checkpoint import JournalState, StateStore
from agent.journal import JournalSpool
from tests.agent.journal_files import Journal

KUBELET = "kubelet.service"


def spooled(spool: JournalSpool) -> bytes:
    """The committed part of the spool file (what the tail may ship)."""
    return spool.spool.read_bytes()[: spool.state.spool_size]


def kubelet_lines(first: int, count: int) -> list[bytes]:
    """Distinct kubelet messages numbered from ``first``."""
    return [b"I1128 kubelet.go:%d] sync pod %d" % (first + i, first + i) for i in range(count)]


def test_unit_entries_are_spooled_once_and_other_units_are_not(tmp_path: Path) -> None:
    """Interleaved units in one journal file: the spool is exactly journalctl's output for the unit."""
    journal = Journal(tmp_path / "journal")
    entries = []
    for i in range(50):
        entries += journal.entries(KUBELET, [b"kubelet line %d" % i])
        entries += journal.entries("containerd.service", [b"containerd line %d" % i])
    journal.write(entries)
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    size = spool.pull()
    expected = journal.read(KUBELET)
    assert expected.count(b"\n") == 50
    assert spooled(spool) == expected
    assert size == len(expected)
    assert b"containerd" not in spooled(spool)
    assert spool.pull() == size
    assert spool.spool.read_bytes() == expected


def test_a_second_batch_appended_to_the_same_file_follows_the_cursor(tmp_path: Path) -> None:
    """Entries journal-remote appends to the file later are spooled after the first batch, once."""
    journal = Journal(tmp_path / "journal")
    journal.write(journal.entries(KUBELET, kubelet_lines(0, 20)))
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    spool.pull()
    first = spooled(spool)
    journal.write(journal.entries(KUBELET, kubelet_lines(20, 30)))
    assert [p.name for p in journal.directory.iterdir()] == ["remote.journal"]
    spool.pull()
    assert spooled(spool) == journal.read(KUBELET)
    assert spooled(spool).startswith(first)
    assert spooled(spool).count(b"\n") == 50


def test_a_second_journal_file_is_followed_like_a_rotated_one(tmp_path: Path) -> None:
    """A batch in a new file of the directory (as after journald rotation) continues after the cursor."""
    journal = Journal(tmp_path / "journal")
    journal.write(journal.entries(KUBELET, kubelet_lines(0, 10)))
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    spool.pull()
    journal.write(journal.entries(KUBELET, kubelet_lines(10, 10)), file_name="remote-2.journal")
    spool.pull()
    assert spooled(spool) == journal.read(KUBELET)
    assert spooled(spool).count(b"\n") == 20


def test_a_restarted_spool_neither_repeats_nor_loses_entries(tmp_path: Path) -> None:
    """A new spool object built from the checkpoint, after a crash mid-pull, ends exactly like journalctl."""
    journal = Journal(tmp_path / "journal")
    store = StateStore(tmp_path / "state").open()
    journal.write(journal.entries(KUBELET, kubelet_lines(0, 25)))
    spool = JournalSpool("kubelet", store, directory=str(journal.directory))
    committed = spool.pull()
    with spool.spool.open("ab") as handle:  # output of a pull whose cursor was never committed
        handle.write(b"2026-11-28T08:00:00+0000 node-1 kubelet[1]: half-writ")
    journal.write(journal.entries(KUBELET, kubelet_lines(25, 25)))

    restarted = JournalSpool(
        "kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory)
    )
    assert restarted.state == spool.state
    assert restarted.spool.stat().st_size == committed
    restarted.pull()
    assert restarted.spool.read_bytes() == journal.read(KUBELET)
    assert restarted.spool.read_bytes().count(b"\n") == 50


def test_multiline_messages_cannot_forge_the_cursor_line(tmp_path: Path) -> None:
    """A message holding a newline and a fake cursor line spools as journalctl prints it; cursor intact."""
    journal = Journal(tmp_path / "journal")
    journal.write(journal.entries(KUBELET, [b"panic: boom\n-- cursor: s=forged", b"after the panic"]))
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    spool.pull()
    assert spooled(spool) == journal.read(KUBELET)
    assert spool.state.cursor.startswith("s=")
    assert "forged" not in spool.state.cursor
    journal.write(journal.entries(KUBELET, [b"next"]))
    spool.pull()
    assert spooled(spool) == journal.read(KUBELET)


def test_the_first_pull_takes_only_the_latest_boot_of_the_directory(tmp_path: Path) -> None:
    """With --directory, --boot on the first pull means the newest boot those files hold, not older ones."""
    journal = Journal(tmp_path / "journal")
    journal.write(journal.entries(KUBELET, [b"previous boot"]))
    journal.boot_id = uuid.uuid4().hex
    journal.write(journal.entries(KUBELET, [b"this boot"]))
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    spool.pull()
    assert spooled(spool).endswith(b"kubelet[4242]: this boot\n")
    assert b"previous boot" not in spooled(spool)


def test_a_journal_directory_that_appears_later_is_read_then(tmp_path: Path) -> None:
    """Before the directory exists journalctl fails and nothing is committed; once it exists, entries come."""
    journal = Journal(tmp_path / "journal")
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    with capture_logs() as logs:
        assert spool.pull() == 0
    assert [event["event"] for event in logs] == ["journalctl_failed"]
    assert spool.state == JournalState(cursor="", spool_size=0)
    journal.write(journal.entries(KUBELET, [b"late start"]))
    spool.pull()
    assert spooled(spool) == journal.read(KUBELET)


def test_a_cursor_journalctl_rejects_keeps_the_committed_spool(tmp_path: Path) -> None:
    """When journalctl refuses the saved cursor (exit 1), the spool and the checkpoint stay as they were."""
    journal = Journal(tmp_path / "journal")
    journal.write(journal.entries(KUBELET, [b"one"]))
    store = StateStore(tmp_path / "state").open()
    spool = JournalSpool("kubelet", store, directory=str(journal.directory))
    spool.pull()
    before = spooled(spool)
    spool.state = JournalState(cursor="not-a-cursor", spool_size=spool.state.spool_size)
    journal.write(journal.entries(KUBELET, [b"two"]))
    with capture_logs() as logs:
        spool.pull()
    assert logs[0]["event"] == "journalctl_failed"
    assert logs[0]["code"] == 1
    assert "cursor" in logs[0]["detail"]
    assert spool.spool.read_bytes() == before
    assert spool.state.cursor == "not-a-cursor"


def test_a_journalctl_that_overruns_its_timeout_commits_nothing(tmp_path: Path) -> None:
    """A journalctl killed at the timeout leaves the spool at its committed size and the cursor unchanged."""
    journal = Journal(tmp_path / "journal")
    journal.write(journal.entries(KUBELET, kubelet_lines(0, 5)))
    spool = JournalSpool("kubelet", StateStore(tmp_path / "state").open(), directory=str(journal.directory))
    with capture_logs() as logs:
        assert spool.pull(timeout=1e-6) == 0
    assert logs[0]["event"] == "journalctl_failed"
    assert spool.spool.read_bytes() == b""
    assert spool.pull() == len(journal.read(KUBELET))
