"""Rotation discovery: finding the file that holds a generation, and the file of the next one.

A :class:`Finder` looks among a log's files (:func:`agent.siblings.candidates`: the live file and
its rotated names, oldest first) for

- the file holding a generation described by an :class:`~agent.identity.Expected` (by inode first,
  then by fingerprint: a copy made by copytruncate, a ``.gz``), and
- the *successor* of a finished generation: the next newer file after the one that held it, skipping
  its own ``.gz`` twin. Without an anchor (the generation's file is gone) it is the oldest file.

A ``.gz`` that cannot be decompressed opens as an :class:`EmptyReader`: the generation exists but its
bytes cannot be read, which the tail records as a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.checkpoint import Position
from agent.errors import Unreadable
from agent.identity import Expected, digest, holds
from agent.rotation import twin_key
from agent.siblings import Candidate, Reader, candidates, open_reader, probe


class EmptyReader:
    """Stands in for a generation whose file cannot be read: no bytes (a gap record says why)."""

    compressed = True

    def __init__(self, dev: int, ino: int) -> None:
        self.dev = dev
        self.ino = ino

    def size(self) -> int:
        """Nothing can be read."""
        return 0

    def read(self, start: int, length: int) -> bytes:
        """Nothing can be read."""
        return b""

    def close(self) -> None:
        """Nothing to close."""


@dataclass(slots=True)
class OpenFile:
    """A file the tail reads: its reader and the generation it feeds."""

    reader: Reader
    generation: int
    draining: bool = False

    @property
    def dev(self) -> int:
        """Device of the file."""
        return self.reader.dev

    @property
    def ino(self) -> int:
        """Inode of the file."""
        return self.reader.ino

    def size(self) -> int:
        """The generation's current length."""
        return self.reader.size()

    def close(self) -> None:
        """Close the handle."""
        self.reader.close()


class Finder:
    """Looks for a log's generations among its files in its directory."""

    def __init__(self, path: str, skip: set[tuple[int, int]]) -> None:
        self.path = path
        self.skip = skip

    def open(self, candidate: Candidate) -> OpenFile | None:
        """Open a candidate; ``None`` if it moved meanwhile. An unreadable ``.gz`` gets an empty reader."""
        reader = open_reader(candidate.path, compressed=candidate.compressed, skip=self.skip)
        if reader is None:
            return None
        if (reader.dev, reader.ino) != (candidate.dev, candidate.ino):
            reader.close()
            return None
        if reader.compressed:
            try:
                reader.size()
            except Unreadable:
                reader.close()
                return OpenFile(EmptyReader(candidate.dev, candidate.ino), 0, draining=True)
        return OpenFile(reader, 0, draining=candidate.rank.scheme != 3)

    def holding(self, candidate: Candidate, expected: Expected) -> OpenFile | None:
        opened = self.open(candidate)
        if opened is None or isinstance(opened.reader, EmptyReader):
            return (
                opened
                if opened is not None and (opened.dev, opened.ino) == (expected.dev, expected.ino)
                else None
            )
        try:
            if holds(expected, probe(opened.reader, expected)):
                return opened
        except Unreadable:
            pass
        opened.close()
        return None

    def locate(self, expected: Expected, exclude: tuple[int, int] | None = None) -> OpenFile | None:
        """Find the file holding a generation: by inode first, then by fingerprint (copies, ``.gz``)."""
        found = [c for c in candidates(self.path) if (c.dev, c.ino) != exclude]
        same = [c for c in found if (c.dev, c.ino) == (expected.dev, expected.ino)]
        others = [c for c in found if c not in same] if expected.head_len > 0 else []
        for candidate in [*same, *sorted(others, key=lambda c: c.compressed)]:
            opened = self.holding(candidate, expected)
            if opened is not None:
                return opened
        return None

    def explain(self, expected: Expected) -> list[str]:
        """Why no file holds the generation, for the log: what each same-inode file held instead."""
        why = []
        for candidate in candidates(self.path):
            if (candidate.dev, candidate.ino) != (expected.dev, expected.ino):
                continue
            opened = self.open(candidate)
            if opened is None:
                why.append(f"{candidate.path}: gone")
                continue
            try:
                seen = probe(opened.reader, expected)
                head = digest(seen.head) == expected.head and len(seen.head) == expected.head_len
                tail = digest(seen.tail) == expected.fingerprint
                why.append(f"{candidate.path}: size {opened.size()}, head {head}, tail {tail}")
            except Unreadable as exc:
                why.append(f"{candidate.path}: {exc}")
            finally:
                opened.close()
        return why or ["no file with its inode"]

    def finished(self, opened: OpenFile, done: list[Expected]) -> bool:
        """Whether the file holds a generation already shipped to its end (found in ``done``)."""
        try:
            head = opened.reader.read(0, max(item.head_len for item in done))
            for item in done:
                if digest(head[: item.head_len]) != item.head or len(head) < item.head_len:
                    continue
                if holds(item, probe(opened.reader, item)) and opened.size() == item.offset:
                    return True
        except Unreadable:
            return False
        return False

    def successor(
        self, anchor: tuple[int, int] | None, expected: Expected | None, done: list[Expected] | None = None
    ) -> OpenFile | None:
        """The file of the generation after the anchor's (the oldest file when there is no anchor).

        Files holding a generation in ``done`` (already shipped) are skipped, whatever their names
        say: a rename that does not follow the scheme (``app.log`` to ``app.log.2`` while ``.1``
        exists) must not ship an old generation again.
        """
        found = candidates(self.path)
        index = next((i for i, c in enumerate(found) if (c.dev, c.ino) == anchor), -1)
        if index < 0 and expected is not None and expected.head_len > 0:
            for i, candidate in enumerate(found):
                opened = self.holding(candidate, expected) if candidate.compressed else None
                if opened is not None:
                    opened.close()
                    index = i
                    break
        twin = twin_key(found[index].rank) if index >= 0 else None
        plain = {twin_key(c.rank) for c in found if not c.compressed}
        for candidate in found[index + 1 :]:
            if twin_key(candidate.rank) == twin:
                continue  # the anchor's own .gz, being or already written
            opened = self.open(candidate)
            if opened is None:
                return None  # it moved while we looked: look again at the next poll
            if isinstance(opened.reader, EmptyReader) and twin_key(candidate.rank) in plain:
                continue  # gzip is still writing it; the plain file is the generation
            if done and self.finished(opened, done):
                opened.close()
                continue
            return opened
        return None

    @staticmethod
    def expected(position: Position) -> Expected:
        """What the file of a durable position must hold."""
        return Expected(
            position.dev,
            position.ino,
            position.offset,
            position.head_len,
            position.head,
            position.fp_start,
            position.fingerprint,
        )

    def live(self) -> OpenFile | None:
        live = next((c for c in candidates(self.path) if c.rank.scheme == 3), None)
        return self.open(live) if live is not None else None

    def live_head_is(self, expected: Expected) -> bool:
        """Whether the live file is the generation's inode and still starts with its head (truncated).

        Otherwise the generation's file is gone, and an inode reused by a new file is a new file.
        """
        if self.live_identity() != (expected.dev, expected.ino):
            return False
        opened = self.live()
        if opened is None:
            return False
        try:
            head = opened.reader.read(0, expected.head_len)
        finally:
            opened.close()
        return expected.head_len == 0 or (len(head), digest(head)) == (expected.head_len, expected.head)

    def live_identity(self) -> tuple[int, int] | None:
        try:
            info = Path(self.path).stat()
        except OSError:
            return None
        return info.st_dev, info.st_ino
