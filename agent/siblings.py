"""Filesystem adapter for rotation: a log's files in its directory, and readers for plain and gzip files.

:func:`candidates` lists the live file and its rotated generations (see :mod:`agent.rotation`), oldest
first. :func:`open_reader` opens one of them; a ``.gz`` is read through gzip with a bounded window, so
the unsent rest of a generation compressed while the agent was behind is shipped from it.
:func:`probe` reads what :mod:`agent.identity` needs to decide whether a file holds a generation.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.errors import Unreadable
from agent.identity import Expected, Seen, tail_start
from agent.rotation import Rank, rank

_WINDOW = 512 * 1024
_STEP = 256 * 1024


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file in the log's directory that is the live log or one of its rotated generations."""

    path: str
    dev: int
    ino: int
    rank: Rank

    @property
    def compressed(self) -> bool:
        """Whether the file is a ``.gz``."""
        return self.rank.compressed


class Reader(Protocol):
    """Random-access reads of one generation's bytes."""

    dev: int
    ino: int
    compressed: bool

    def size(self) -> int:
        """The generation's current length."""

    def read(self, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start``."""

    def close(self) -> None:
        """Release the handle."""


class PlainReader:
    """A regular file read with ``pread`` through a handle held open across renames."""

    compressed = False

    def __init__(self, fd: int, dev: int, ino: int) -> None:
        self.fd = fd
        self.dev = dev
        self.ino = ino

    def size(self) -> int:
        """The file's size now, through the handle."""
        return os.fstat(self.fd).st_size

    def read(self, start: int, length: int) -> bytes:
        """Read up to ``length`` bytes at ``start``."""
        parts = []
        while length > 0:
            data = os.pread(self.fd, length, start)
            if not data:
                break
            parts.append(data)
            start += len(data)
            length -= len(data)
        return b"".join(parts)

    def close(self) -> None:
        """Close the handle."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


class GzipReader:
    """A ``.gz`` generation, decompressed forward through a bounded window (re-read from 0 if needed)."""

    compressed = True

    def __init__(self, fd: int, dev: int, ino: int) -> None:
        self.dev = dev
        self.ino = ino
        self._file = os.fdopen(fd, "rb")
        self._gz: gzip.GzipFile | None = None
        self._buf = b""
        self._buf_start = 0
        self._size: int | None = None

    def _rewind(self) -> None:
        self._file.seek(0)
        self._gz = gzip.GzipFile(fileobj=self._file, mode="rb")
        self._buf = b""
        self._buf_start = 0

    def _more(self) -> bool:
        gz = self._gz
        if gz is None:
            self._rewind()
            gz = self._gz
        try:
            data = gz.read(_STEP) if gz is not None else b""
        except (OSError, EOFError, zlib.error) as exc:
            raise Unreadable(f"cannot decompress: {type(exc).__name__}: {exc}") from exc
        if not data:
            return False
        self._buf += data
        return True

    def size(self) -> int:
        """The decompressed length (one full pass the first time; the file no longer grows)."""
        if self._size is None:
            self._rewind()
            total = 0
            while self._more():
                total += len(self._buf)
                self._buf = b""
            self._size = total
            self._gz = None  # the next read starts over
        return self._size

    def read(self, start: int, length: int) -> bytes:
        """Up to ``length`` decompressed bytes from ``start``."""
        if start < self._buf_start or self._gz is None:
            self._rewind()
        end = start + length
        while self._buf_start + len(self._buf) < end and self._more():
            drop = min(start - _WINDOW - self._buf_start, len(self._buf))
            if drop > 0:
                self._buf = self._buf[drop:]
                self._buf_start += drop
        lo = start - self._buf_start
        return self._buf[lo : lo + length]

    def close(self) -> None:
        """Close the file."""
        with contextlib.suppress(OSError):
            self._file.close()


def open_reader(path: str, *, compressed: bool, skip: set[tuple[int, int]] | None = None) -> Reader | None:
    """Open a generation's file for reading; ``None`` when it is gone, not regular, or to be skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (skip and (info.st_dev, info.st_ino) in skip):
        os.close(fd)
        return None
    if compressed:
        return GzipReader(fd, info.st_dev, info.st_ino)
    return PlainReader(fd, info.st_dev, info.st_ino)


def candidates(path: str) -> list[Candidate]:
    """The live log at ``path`` and its rotated generations in its directory, oldest first."""
    folder, base = os.path.split(path)
    found = []
    try:
        entries = os.scandir(folder or ".")
    except OSError:
        return []
    with entries:
        for entry in entries:
            if not entry.name.startswith(base):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = rank(base, entry.name, info.st_mtime_ns)
            if key is not None and stat.S_ISREG(info.st_mode):
                found.append(Candidate(entry.path, info.st_dev, info.st_ino, key))
    return sorted(found, key=lambda item: item.rank)


def probe(reader: Reader, expected: Expected) -> Seen:
    """Read the bytes :func:`agent.identity.holds` compares (raises :class:`Unreadable`)."""
    head = reader.read(0, expected.head_len)
    start = tail_start(expected.offset)
    tail = reader.read(start, expected.offset - start) if start == expected.fp_start else b""
    return Seen(reader.dev, reader.ino, reader.compressed, head, tail)


def is_rotated_sibling(path: str, others: set[str]) -> bool:
    """Whether ``path`` is a rotated generation of another path in ``others`` (not a log of its own)."""
    folder = str(Path(path).parent)
    name = Path(path).name
    for other in others:
        if other != path and str(Path(other).parent) == folder:
            key = rank(Path(other).name, name)
            if key is not None and key.scheme != 3:
                return True
    return False
