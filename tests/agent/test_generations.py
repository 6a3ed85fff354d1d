"""Every generation of a rotated log, in order, exactly once: rotation schemes, restarts, copies, losses."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from agent.checkpoint import Position, StateStore
from agent.identity import tail_fingerprint
from agent.sources import FileTail
from keysvc.wire.objectnames import MarkerName, parse_marker


def new_tail(tmp_path: Path, path: Path) -> FileTail:
    """A tail on ``path`` started from whatever position tmp_path/state holds."""
    tail = FileTail(str(path), StateStore(tmp_path / "state").open(), skip=set())
    tail.start(0.0)
    return tail


def ship(tail: FileTail, limit: int | None = None) -> bytes:
    """Pretend the available bytes (at most ``limit``) and the markers were shipped; return the bytes."""
    data = tail.read(tail.offset, limit if limit is not None else 1 << 24)
    end = tail.offset + len(data)
    start = max(0, end - 64)
    tail.shipped(end, tail_fingerprint(tail.read(start, end - start), end))
    return data


def checkpoint(tail: FileTail) -> None:
    """Save the position the delivery of everything shipped so far would have saved, then stop."""
    current = tail.current
    assert current is not None
    start = max(0, tail.offset - 64)
    fp = tail_fingerprint(tail.read(start, tail.offset - start), tail.offset)
    position = Position(
        tail.source_id, tail.path, current.generation, tail.offset, current.dev, current.ino, *fp, *tail.head
    )
    tail.store.save_position(position)
    tail.close()


def run_out(tail: FileTail, now: float = 100.0) -> tuple[dict[int, bytes], list[MarkerName]]:
    """Ship everything, moving through every rotated generation; return generation -> bytes, and markers."""
    out: dict[int, bytes] = {}
    markers: list[MarkerName] = []
    for _ in range(50):
        tail.refresh(now)
        if tail.current is None:
            break
        generation = tail.current.generation
        markers += [parse_marker(suffix) for suffix in tail.markers]
        out[generation] = out.get(generation, b"") + ship(tail)
        if not tail.drained(now):
            break
    return out, markers


def records(markers: list[MarkerName]) -> list[tuple[str, str | None, int | None, bool]]:
    """The generation records as (stream, previous, its length, copytruncated)."""
    return [(m.stream, m.previous, m.length, m.copytruncated) for m in markers if m.kind == "generation"]


def gaps(markers: list[MarkerName]) -> list[tuple[str, int, int | None, str]]:
    """The gap records as (stream, start, end, reason)."""
    return [(m.stream, m.start, m.end, m.reason) for m in markers if m.kind == "gap"]


def rotate(path: Path, keep: int, *, compress_from: int | None = None) -> None:
    """logrotate's numbered shift: .N-1 -> .N (oldest beyond ``keep`` deleted), path -> .1, new empty path.

    With ``compress_from`` (delaycompress), ``.N`` for N >= it is gzip-compressed after the shift.
    """

    def name(n: int, gz: bool) -> Path:
        return path.with_name(f"{path.name}.{n}{'.gz' if gz else ''}")

    for n in range(keep, 0, -1):
        for gz in (False, True):
            if name(n, gz).exists():
                if n == keep:
                    name(n, gz).unlink()
                else:
                    name(n, gz).rename(name(n + 1, gz))
    path.rename(name(1, False))
    path.touch()
    if compress_from is not None:
        for n in range(compress_from, keep + 1):
            if name(n, False).exists():
                gzip_file(name(n, False))


def gzip_file(path: Path) -> Path:
    """``gzip path``: write path.gz, keep the mtime, remove path."""
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    info = path.stat()
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    path.unlink()
    return target


def test_two_numbered_rotations_while_stopped_ship_three_generations_in_order(tmp_path: Path) -> None:
    """A stopped agent misses .log -> .1 -> .2: it ships gen 1 from .2, then .1, then the new file."""
    path = tmp_path / "app.log"
    path.write_bytes(b"one shipped\n")
    tail = new_tail(tmp_path, path)
    assert ship(tail) == b"one shipped\n"
    checkpoint(tail)
    with path.open("ab") as handle:
        handle.write(b"one unsent\n")
    rotate(path, 5)
    path.write_bytes(b"two\n")
    rotate(path, 5)
    path.write_bytes(b"three\n")
    out, markers = run_out(new_tail(tmp_path, path))
    assert out == {1: b"one unsent\n", 2: b"two\n", 3: b"three\n"}
    assert records(markers) == [("g000002", "g000001", 23, False), ("g000003", "g000002", 4, False)]
    assert gaps(markers) == []


def test_three_rotations_behind_an_open_handle_are_all_shipped(tmp_path: Path) -> None:
    """While the agent is stuck (keysvc down), three rotations pass; every generation follows in order."""
    path = tmp_path / "app.log"
    path.write_bytes(b"g1\n")
    tail = new_tail(tmp_path, path)
    for content in (b"g2\n", b"g3\n", b"g4\n"):
        rotate(path, 2)
        path.write_bytes(content)
    out, markers = run_out(tail)
    assert out == {1: b"g1\n", 2: b"g2\n", 3: b"g3\n", 4: b"g4\n"}
    assert [r[0] for r in records(markers)] == ["g000001", "g000002", "g000003", "g000004"]


def test_compressed_generations_are_read_through_gzip(tmp_path: Path) -> None:
    """delaycompress + compress: the unsent rest of generation 1 and a whole middle one come from .gz."""
    path = tmp_path / "app.log"
    path.write_bytes(b"first part\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    with path.open("ab") as handle:
        handle.write(b"rest of one\n" * 500)
    for content in (b"middle two\n" * 300, b"three\n", b"live four\n"):
        rotate(path, 5, compress_from=2)
        path.write_bytes(content)
    assert sorted(p.name for p in tmp_path.glob("app.log*")) == [
        "app.log",
        "app.log.1",
        "app.log.2.gz",
        "app.log.3.gz",
    ]
    out, _ = run_out(new_tail(tmp_path, path))
    assert out == {1: b"rest of one\n" * 500, 2: b"middle two\n" * 300, 3: b"three\n", 4: b"live four\n"}


def test_dateext_rotation_orders_generations_by_date(tmp_path: Path) -> None:
    """dateext names (-YYYYMMDD, the older compressed) are ordered by date, whatever their mtimes."""
    path = tmp_path / "app.log"
    path.write_bytes(b"day one\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    path.rename(tmp_path / "app.log-20261201")
    (tmp_path / "app.log-20261202").write_bytes(b"day two\n")
    gzip_file(tmp_path / "app.log-20261201")
    path.write_bytes(b"day three\n")
    os.utime(tmp_path / "app.log-20261201.gz", (2_000_000_000, 2_000_000_000))  # mtime must not matter
    out, markers = run_out(new_tail(tmp_path, path))
    assert out == {1: b"", 2: b"day two\n", 3: b"day three\n"}
    # (the copytruncated flag may be set: the new app.log can reuse the freed inode of the gzipped file,
    # which looks exactly like a copytruncate after a restart)
    assert records(markers)[0][:3] == ("g000002", "g000001", 8)


def test_kubelet_container_log_rotation_with_later_gzip(tmp_path: Path) -> None:
    """kubelet renames 0.log to 0.log.<timestamp> and gzips older ones; all generations follow in order."""
    path = tmp_path / "0.log"
    path.write_bytes(b"container start\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    with path.open("ab") as handle:
        handle.write(b"more of one\n")
    path.rename(tmp_path / "0.log.20261201-120000")
    path.write_bytes(b"two\n")
    path.rename(tmp_path / "0.log.20261201-120500")
    gzip_file(tmp_path / "0.log.20261201-120000")
    path.write_bytes(b"three\n")
    out, _ = run_out(new_tail(tmp_path, path))
    assert out == {1: b"more of one\n", 2: b"two\n", 3: b"three\n"}


def test_generation_deleted_before_it_was_read_is_recorded_as_a_gap(tmp_path: Path) -> None:
    """With rotate 1, two rotations while stopped delete generation 1: its unsent rest is a recorded gap."""
    path = tmp_path / "app.log"
    path.write_bytes(b"shipped\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    rotate(path, 1)
    path.write_bytes(b"two\n")
    rotate(path, 1)
    path.write_bytes(b"three\n")
    out, markers = run_out(new_tail(tmp_path, path))
    assert out == {2: b"two\n", 3: b"three\n"}
    assert gaps(markers) == [("g000001", 8, None, "deleted")]
    assert records(markers)[0] == ("g000002", "g000001", None, False)


def test_inode_reused_by_a_new_file_is_a_new_generation(tmp_path: Path) -> None:
    """Same device and inode but other first bytes: a new file, shipped from byte 0; the old rest is a gap."""
    path = tmp_path / "app.log"
    path.write_bytes(b"old file, first line\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    with path.open("r+b") as handle:  # what a reused inode looks like: the identity stays, the bytes do not
        handle.write(b"NEW FILE, other bytes and longer\n")
    out, markers = run_out(new_tail(tmp_path, path))
    assert out == {2: b"NEW FILE, other bytes and longer\n"}
    assert gaps(markers) == [("g000001", 21, None, "deleted")]


def test_copytruncate_while_behind_finishes_the_tail_from_the_copy(tmp_path: Path) -> None:
    """The unsent tail at a copytruncate is shipped from the copy, then the truncated file is generation 2."""
    path = tmp_path / "app.log"
    path.write_bytes(b"shipped line\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    with path.open("ab") as handle:
        handle.write(b"not yet shipped\n")
    tail.refresh(1.0)
    shutil.copyfile(path, tmp_path / "app.log.1")
    with path.open("r+b") as handle:
        handle.truncate(0)
    path.write_bytes(b"after\n")
    out, markers = run_out(tail)
    assert out == {1: b"not yet shipped\n", 2: b"after\n"}
    assert records(markers)[-1] == ("g000002", "g000001", 29, True)
    assert gaps(markers) == []


def test_copytruncate_while_stopped_finishes_from_a_compressed_copy(tmp_path: Path) -> None:
    """Stopped through copytruncate + compress: the rest of generation 1 is read from app.log.1.gz."""
    path = tmp_path / "app.log"
    path.write_bytes(b"shipped line\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    with path.open("ab") as handle:
        handle.write(b"unsent\n")
    shutil.copyfile(path, tmp_path / "app.log.1")
    path.write_bytes(b"")
    gzip_file(tmp_path / "app.log.1")
    path.write_bytes(b"fresh\n")
    out, markers = run_out(new_tail(tmp_path, path))
    assert out == {1: b"unsent\n", 2: b"fresh\n"}
    assert records(markers)[-1] == ("g000002", "g000001", 20, True)


def test_truncation_without_a_copy_records_the_bytes_it_saw_but_never_shipped(tmp_path: Path) -> None:
    """A file truncated below the offset with no copy anywhere: the bytes seen but unsent are a gap."""
    path = tmp_path / "app.log"
    path.write_bytes(b"0123456789\n")
    tail = new_tail(tmp_path, path)
    ship(tail, limit=4)
    tail.refresh(1.0)
    path.write_bytes(b"x\n")
    out, markers = run_out(tail)
    assert out == {2: b"x\n"}
    assert gaps(markers) == [("g000001", 4, 11, "truncated")]
    assert records(markers)[-1] == ("g000002", "g000001", 4, True)


def test_unreadable_compressed_generation_is_a_gap_and_the_next_one_follows(tmp_path: Path) -> None:
    """A broken .gz in the middle is recorded as an unreadable generation; the newer ones still ship."""
    path = tmp_path / "app.log"
    path.write_bytes(b"one\n")
    tail = new_tail(tmp_path, path)
    ship(tail)
    checkpoint(tail)
    rotate(path, 5)
    path.write_bytes(b"two\n")
    rotate(path, 5)
    (tmp_path / "app.log.1").rename(tmp_path / "app.log.1.gz")
    (tmp_path / "app.log.1.gz").write_bytes(b"\x1f\x8bnot really gzip")
    path.write_bytes(b"three\n")
    out, markers = run_out(new_tail(tmp_path, path))
    assert out == {1: b"", 2: b"", 3: b"three\n"}
    assert gaps(markers) == [("g000002", 0, None, "unreadable")]


def test_restart_in_the_middle_of_a_compressed_generation_continues_there(tmp_path: Path) -> None:
    """A generation partly shipped from a .gz resumes at its offset after a restart, through gzip again."""
    path = tmp_path / "app.log"
    body = b"".join(b"line %05d\n" % i for i in range(5000))
    path.write_bytes(body)
    tail = new_tail(tmp_path, path)
    ship(tail, limit=1000)
    checkpoint(tail)
    rotate(path, 3)
    gzip_file(tmp_path / "app.log.1")
    path.write_bytes(b"next\n")
    tail = new_tail(tmp_path, path)
    assert ship(tail, limit=20000) == body[1000:21000]
    checkpoint(tail)
    out, _ = run_out(new_tail(tmp_path, path))
    assert out == {1: body[21000:], 2: b"next\n"}


def test_an_old_generation_renamed_out_of_order_is_not_shipped_again(tmp_path: Path) -> None:
    """app.log renamed to .2 while .1 (shipped) exists: the next generation is the new file, not .1."""
    path = tmp_path / "app.log"
    path.write_bytes(b"generation one\n")
    tail = new_tail(tmp_path, path)
    rotate(path, 5)
    path.write_bytes(b"generation two\n")
    out, _ = run_out(tail)
    assert out == {1: b"generation one\n", 2: b"generation two\n"}
    checkpoint(tail)
    path.rename(tmp_path / "app.log.2")  # not logrotate's shift: .1 is older than .2 now
    path.write_bytes(b"generation three\n")
    out, _ = run_out(new_tail(tmp_path, path))
    assert out == {2: b"", 3: b"generation three\n"}
