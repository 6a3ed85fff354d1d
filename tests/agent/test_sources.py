"""Following files: late and tiny files, rotation both ways, truncation, restarts (journald: test_journal)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.checkpoint import Position, StateStore
from agent.journal import JournalSpool
from agent.sources import FileTail, expand, fingerprint, is_glob


def tail_of(tmp_path: Path, path: Path) -> FileTail:
    """A tail on ``path`` with its state under tmp_path/state."""
    tail = FileTail(str(path), StateStore(tmp_path / "state").open(), skip=set())
    tail.start(0.0)
    return tail


def ship_all(tail: FileTail) -> bytes:
    """Pretend everything available was shipped; return it."""
    data = tail.read(tail.offset, 1 << 20)
    end = tail.offset + len(data)
    tail.shipped(end, fingerprint(tail.current.reader.fd, end))  # type: ignore[union-attr]
    return data


def test_late_file_is_opened_when_it_appears(tmp_path: Path) -> None:
    """A configured path that does not exist yet is picked up once written."""
    path = tmp_path / "late.log"
    tail = tail_of(tmp_path, path)
    tail.refresh(1.0)
    assert tail.current is None
    path.write_bytes(b"x")
    tail.refresh(2.0)
    assert tail.current is not None
    assert tail.current.generation == 1
    assert ship_all(tail) == b"x"


def test_tiny_binary_file_without_newline_is_readable(tmp_path: Path) -> None:
    """One byte, NUL or invalid UTF-8, is read as is and counted as backlog at once."""
    path = tmp_path / "tiny.log"
    path.write_bytes(b"\x00\xff")
    tail = tail_of(tmp_path, path)
    assert tail.pending_since == float("-inf")
    assert tail.read(0, 100) == b"\x00\xff"


def test_rename_rotation_drains_old_handle_then_starts_new_generation(tmp_path: Path) -> None:
    """After a rename the old file is finished through its handle, then the new file is generation 2."""
    path = tmp_path / "app.log"
    path.write_bytes(b"old\n")
    tail = tail_of(tmp_path, path)
    assert ship_all(tail) == b"old\n"
    with path.open("ab") as handle:
        path.rename(tmp_path / "app.log.1")
        handle.write(b"late old\n")
    path.write_bytes(b"new\n")
    tail.refresh(1.0)
    assert tail.current is not None
    assert tail.current.draining
    assert tail.drained(1.0) is False
    assert ship_all(tail) == b"late old\n"
    assert tail.drained(2.0) is True
    assert tail.current is not None
    assert tail.current.generation == 2
    assert tail.offset == 0
    assert ship_all(tail) == b"new\n"


def test_deletion_drains_then_waits_for_the_path(tmp_path: Path) -> None:
    """A deleted file is finished, kept open until a new file exists, and that file is generation 2."""
    path = tmp_path / "gone.log"
    path.write_bytes(b"a\n")
    tail = tail_of(tmp_path, path)
    path.unlink()
    tail.refresh(1.0)
    assert ship_all(tail) == b"a\n"
    assert tail.drained(1.0) is False
    assert tail.current is not None
    assert tail.current.generation == 1
    path.write_bytes(b"b\n")
    tail.refresh(2.0)
    assert tail.drained(2.0)
    assert tail.current is not None
    assert tail.current.generation == 2


def test_copytruncate_starts_a_new_generation_at_zero(tmp_path: Path) -> None:
    """When the file shrinks under the shipped offset, generation 2 starts at byte 0 of the same file."""
    path = tmp_path / "ct.log"
    path.write_bytes(b"0123456789\n")
    tail = tail_of(tmp_path, path)
    ship_all(tail)
    with path.open("r+b") as handle:
        handle.truncate(0)
        handle.write(b"new\n")
    tail.refresh(1.0)
    assert tail.current is not None
    assert tail.current.generation == 2
    assert tail.offset == 0
    assert ship_all(tail) == b"new\n"


def test_truncate_and_regrow_past_offset_is_caught_by_fingerprint(tmp_path: Path) -> None:
    """A file truncated and rewritten beyond the shipped offset between two polls is still noticed."""
    path = tmp_path / "ct.log"
    path.write_bytes(b"aaaa\n")
    tail = tail_of(tmp_path, path)
    ship_all(tail)
    path.write_bytes(b"bbbbbbbbbbbb\n")
    tail.refresh(1.0)
    assert tail.current is not None
    assert tail.current.generation == 2


def position_for(path: Path, generation: int, offset: int, source_id: str) -> Position:
    """The position a previous run would have saved."""
    info = path.stat()
    fd = os.open(path, os.O_RDONLY)
    try:
        fp_start, fp = fingerprint(fd, offset)
    finally:
        os.close(fd)
    return Position(source_id, str(path), generation, offset, info.st_dev, info.st_ino, fp_start, fp)


def test_restart_resumes_at_the_saved_offset(tmp_path: Path) -> None:
    """A restart on the same file continues from the acknowledged offset."""
    path = tmp_path / "r.log"
    path.write_bytes(b"shipped\nnot yet\n")
    probe = FileTail(str(path), StateStore(tmp_path / "state").open(), skip=set())
    probe.store.save_position(position_for(path, 3, 8, probe.source_id))
    tail = tail_of(tmp_path, path)
    assert (tail.current.generation, tail.offset) == (3, 8)  # type: ignore[union-attr]
    assert ship_all(tail) == b"not yet\n"


def test_restart_finds_a_file_rotated_while_down_by_inode(tmp_path: Path) -> None:
    """If the path names a new file, the old one is found in the directory by inode and finished first."""
    path = tmp_path / "r.log"
    path.write_bytes(b"shipped\nunsent\n")
    probe = FileTail(str(path), StateStore(tmp_path / "state").open(), skip=set())
    probe.store.save_position(position_for(path, 1, 8, probe.source_id))
    path.rename(tmp_path / "r.log.1")
    path.write_bytes(b"fresh\n")
    tail = tail_of(tmp_path, path)
    assert tail.current is not None
    assert tail.current.draining
    assert tail.current.generation == 1
    assert ship_all(tail) == b"unsent\n"
    assert tail.drained(1.0)
    assert tail.current is not None
    assert tail.current.generation == 2
    assert ship_all(tail) == b"fresh\n"


def test_restart_on_a_rewritten_file_starts_a_new_generation(tmp_path: Path) -> None:
    """Same inode but different bytes before the offset: the file was rewritten, so generation + 1."""
    path = tmp_path / "r.log"
    path.write_bytes(b"original\n")
    probe = FileTail(str(path), StateStore(tmp_path / "state").open(), skip=set())
    probe.store.save_position(position_for(path, 4, 9, probe.source_id))
    path.write_bytes(b"REWRITTEN\n")
    tail = tail_of(tmp_path, path)
    assert (tail.current.generation, tail.offset) == (5, 0)  # type: ignore[union-attr]


def test_own_output_file_is_skipped(tmp_path: Path) -> None:
    """A path whose inode is the agent's own log output is never opened."""
    path = tmp_path / "agent.log"
    path.write_bytes(b"{}")
    info = path.stat()
    tail = FileTail(str(path), StateStore(tmp_path / "state").open(), skip={(info.st_dev, info.st_ino)})
    tail.start(0.0)
    assert tail.current is None


def test_globs_expand_to_regular_files_only(tmp_path: Path) -> None:
    """A glob lists files, sorted, and not directories."""
    (tmp_path / "b.log").write_bytes(b"")
    (tmp_path / "a.log").write_bytes(b"")
    (tmp_path / "d.log").mkdir()
    assert is_glob(str(tmp_path / "*.log"))
    assert not is_glob("/var/log/syslog")
    assert expand(str(tmp_path / "*.log")) == [str(tmp_path / "a.log"), str(tmp_path / "b.log")]


def test_agent_never_follows_its_own_unit() -> None:
    """journal:nodelogs-agent is refused with a reason."""
    assert JournalSpool.usable("nodelogs-agent") is not None
    assert JournalSpool.usable("nodelogs-agent.service") is not None


def test_rotated_file_is_kept_open_until_quiet(tmp_path: Path) -> None:
    """A renamed file still written through an old handle is not closed before it has been quiet."""
    path = tmp_path / "app.log"
    path.write_bytes(b"old\n")
    tail = tail_of(tmp_path, path)
    ship_all(tail)
    path.rename(tmp_path / "app.log.1")
    tail.refresh(10.0)
    with (tmp_path / "app.log.1").open("ab") as handle:
        handle.write(b"straggler\n")
    tail.refresh(10.5)
    assert ship_all(tail) == b"straggler\n"
    path.write_bytes(b"new\n")
    assert tail.drained(11.0, quiet_for=2.0) is False
    assert tail.drained(12.5, quiet_for=2.0) is True
