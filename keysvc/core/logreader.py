"""Reassemble a node's log streams from its chunk objects, and say exactly where they do not add up.

Pure: no I/O. A node's objects are named ``<source>/<stream>/<start>-<end>.gz`` (see
:mod:`keysvc.wire.objectnames`); each (source, stream) is one byte stream that begins at byte 0, and its
objects, ordered by ``start``, should tile it: each object starts where the previous one ended.

A :class:`StreamCursor` takes chunk names in any order and any number of times, and hands back
:class:`Piece` objects to write, in offset order, plus a :class:`Problem` for every place the
tiling breaks:

- a **gap** (bytes no object covers) is reported, then skipped, once it has been waited for long
  enough (``gap_wait``; 0 when reading a finished node, some seconds with ``--follow``, since
  chunks of one batch may land out of order);
- an **overlap** (bytes two objects both claim) is reported and the bytes are written once: the
  later object is written from where the earlier one ended;
- a **bad length** (an object that does not decompress to ``end - start`` bytes) is reported.

Decompression is bounded by the length the name announces, so a hostile object cannot blow up memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from keysvc.wire.objectnames import ChunkName

ProblemKind = Literal["gap", "overlap", "bad-length", "bad-name"]


@dataclass(frozen=True, slots=True)
class Problem:
    """A place where a stream's objects do not tile it."""

    kind: ProblemKind
    source: str
    stream: str
    start: int
    end: int
    detail: str

    def describe(self) -> str:
        """One line for stderr."""
        where = f"{self.source}/{self.stream}"
        if self.kind == "bad-name":
            return f"BAD NAME {self.detail}"
        label = {"gap": "GAP", "overlap": "OVERLAP", "bad-length": "BAD LENGTH"}[self.kind]
        return (
            f"{label} in {where} bytes {self.start}-{self.end} ({self.end - self.start} bytes): {self.detail}"
        )


@dataclass(frozen=True, slots=True)
class Piece:
    """Write ``chunk``'s bytes from ``skip`` onwards (``skip`` > 0 only after an overlap)."""

    chunk: ChunkName
    skip: int = 0


@dataclass
class StreamCursor:
    """Where one (source, stream) has been written up to, and which chunks wait to be written."""

    source: str
    stream: str
    offset: int = 0
    _pending: dict[tuple[int, int], ChunkName] = field(default_factory=dict)
    _done: set[tuple[int, int]] = field(default_factory=set)
    _gap_since: float | None = None

    def add(self, chunk: ChunkName) -> None:
        """Offer a chunk; one already written or already pending is ignored."""
        span = (chunk.start, chunk.end)
        if span not in self._done:
            self._pending[span] = chunk

    @property
    def waiting(self) -> bool:
        """Whether chunks are held back behind a gap."""
        return bool(self._pending)

    def ready(self, now: float = 0.0, gap_wait: float = 0.0) -> tuple[list[Piece], list[Problem]]:
        """Return the pieces that can be written now, in order, and the problems found on the way.

        A gap is skipped (and reported) only once it has been seen for ``gap_wait`` seconds.
        """
        pieces: list[Piece] = []
        problems: list[Problem] = []
        for span in sorted(self._pending):
            chunk = self._pending[span]
            if chunk.start > self.offset:
                if self._gap_since is None:
                    self._gap_since = now
                if now - self._gap_since < gap_wait:
                    break
                problems.append(
                    self._problem(
                        "gap",
                        self.offset,
                        chunk.start,
                        f"no object covers these bytes; next is {_name(chunk)}",
                    )
                )
            self._gap_since = None
            del self._pending[span]
            self._done.add(span)
            if chunk.end <= self.offset:
                problems.append(
                    self._problem(
                        "overlap",
                        chunk.start,
                        chunk.end,
                        f"{_name(chunk)} lies wholly inside bytes already written; skipped",
                    )
                )
                continue
            skip = max(0, self.offset - chunk.start)
            if skip:
                problems.append(
                    self._problem(
                        "overlap",
                        chunk.start,
                        self.offset,
                        f"{_name(chunk)} repeats bytes already written; written once",
                    )
                )
            pieces.append(Piece(chunk, skip))
            self.offset = chunk.end
        return pieces, problems

    def _problem(self, kind: ProblemKind, start: int, end: int, detail: str) -> Problem:
        return Problem(kind, self.source, self.stream, start, end, detail)


@dataclass
class NodeLogs:
    """Every stream of one node, keyed by (source, stream), in the order streams should be written."""

    cursors: dict[tuple[str, str], StreamCursor] = field(default_factory=dict)

    def add(self, chunks: Iterable[ChunkName]) -> None:
        """Offer chunk names (from a listing); repeats are ignored."""
        for chunk in chunks:
            key = (chunk.source, chunk.stream)
            if key not in self.cursors:
                self.cursors[key] = StreamCursor(chunk.source, chunk.stream)
            self.cursors[key].add(chunk)

    def streams(self, source: str | None = None) -> list[StreamCursor]:
        """The cursors, ordered by source then generation; only ``source``'s when given."""
        return [self.cursors[key] for key in sorted(self.cursors) if source is None or key[0] == source]


def decompress_chunk(chunk: ChunkName, data: bytes) -> tuple[bytes, Problem | None]:
    """Gunzip an object (all gzip members), inflating at most one byte more than its name announces."""
    expected = chunk.end - chunk.start
    try:
        body, complete = _gunzip_bounded(data, expected + 1)
    except zlib.error as exc:
        return b"", _bad_length(chunk, f"{_name(chunk)} is not valid gzip: {exc}")
    if not complete and len(body) <= expected:
        return body, _bad_length(chunk, f"{_name(chunk)} is a truncated gzip stream")
    if len(body) != expected:
        got = f"more than {expected}" if len(body) > expected else str(len(body))
        return body[:expected], _bad_length(
            chunk, f"{_name(chunk)} holds {got} bytes, its name says {expected}"
        )
    return body, None


def _gunzip_bounded(data: bytes, limit: int) -> tuple[bytes, bool]:
    """Inflate gzip members until ``limit`` bytes; return them and whether every member ended cleanly."""
    out: list[bytes] = []
    size = 0
    rest = data
    while rest and size < limit:
        inflater = zlib.decompressobj(wbits=31)
        piece = inflater.decompress(rest, limit - size)
        out.append(piece)
        size += len(piece)
        if not inflater.eof:
            return b"".join(out), False
        rest = inflater.unused_data
    return b"".join(out), True


def _bad_length(chunk: ChunkName, detail: str) -> Problem:
    return Problem("bad-length", chunk.source, chunk.stream, chunk.start, chunk.end, detail)


def _name(chunk: ChunkName) -> str:
    return chunk.suffix
