"""Pure rotation naming and identity matching: which file is which generation."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

from agent.identity import Expected, Seen, digest, holds
from agent.rotation import rank
from agent.siblings import open_reader


def test_rotated_names_sort_oldest_first_and_the_live_file_last() -> None:
    """Numbered (.3 before .1), gz twins (plain first) and the live file order as logrotate means them."""
    names = ["app.log", "app.log.1", "app.log.2.gz", "app.log.2", "app.log.10.gz", "app.log.3.gz"]
    ranks = {name: rank("app.log", name) for name in names}
    ordered = sorted(names, key=lambda name: ranks[name])  # type: ignore[arg-type, return-value]
    assert ordered == ["app.log.10.gz", "app.log.3.gz", "app.log.2", "app.log.2.gz", "app.log.1", "app.log"]


def test_dated_and_kubelet_names_sort_by_their_stamp() -> None:
    """dateext and kubelet timestamps order by the stamp, not the mtime."""
    later = rank("app.log", "app.log-20261202", mtime_ns=1)
    earlier = rank("app.log", "app.log-20261201.gz", mtime_ns=9)
    assert earlier is not None
    assert later is not None
    assert earlier < later
    k1, k2 = rank("0.log", "0.log.20261201-120000.gz"), rank("0.log", "0.log.20261201-130000")
    assert k1 is not None
    assert k2 is not None
    assert k1 < k2


def test_other_files_are_not_generations() -> None:
    """Names that merely start with the log's name are not its rotations."""
    for name in ("app.log.swp", "app.logger", "app.log-old", "app.log.1.bak", "other.log"):
        assert rank("app.log", name) is None


def expected(head: bytes, before: bytes, *, offset: int, ino: int = 7) -> Expected:
    """What a generation at ``offset`` with those head and tail bytes looks like."""
    return Expected(1, ino, offset, len(head), digest(head), offset - len(before), digest(before))


def test_identity_needs_matching_bytes_even_on_the_same_inode() -> None:
    """A reused inode with other first bytes does not hold the old generation."""
    want = expected(b"old head", b"old tail", offset=100)
    assert holds(want, Seen(1, 7, False, b"old head", b"old tail"))
    assert not holds(want, Seen(1, 7, False, b"new head", b"old tail"))
    assert not holds(want, Seen(1, 7, False, b"old head", b"other!!!"))


def test_another_inode_holds_a_generation_only_by_a_nonempty_head() -> None:
    """A copy or .gz is recognised by its bytes, but an empty head would match any file."""
    assert holds(expected(b"abc", b"abc", offset=3), Seen(1, 99, True, b"abc", b"abc"))
    assert not holds(expected(b"", b"", offset=0), Seen(1, 99, False, b"", b""))
    assert holds(expected(b"", b"", offset=0), Seen(1, 7, False, b"", b""))


def test_gzip_reader_reads_any_range_of_a_large_file(tmp_path: Path) -> None:
    """Ranges far into a multi-MiB .gz, forward and backward, come back exactly (the window slides)."""
    rng = random.Random(5)  # noqa: S311 - reproducible content, not crypto
    data = b"".join(b"L" * rng.randint(1, 150_000) + b"\n" for _ in range(60))
    path = tmp_path / "big.log.1.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    reader = open_reader(str(path), compressed=True)
    assert reader is not None
    assert reader.size() == len(data)
    for start in (0, 70_000, len(data) // 2, len(data) - 69, 10, len(data) - 1):
        assert reader.read(start, 64) == data[start : start + 64]
    reader.close()
