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

:func:`check_sequence` then checks the generations of each source against the agent's markers
(:class:`~keysvc.wire.objectnames.MarkerName`): every **recorded gap** is reported, and so is every
**hole**: a generation number with no object at all, or a generation that holds fewer bytes than
the next generation's record says it ended with. A copytruncate boundary gives a note, not a
problem: the bytes written between the copy and the truncate were never readable.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from keysvc.wire.objectnames import ChunkName, MarkerName, stream_name

ProblemKind = Literal["gap", "overlap", "bad-length", "bad-name", "recorded-gap", "hole"]


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
        if self.kind in ("recorded-gap", "hole"):
            return f"{'GAP RECORDED' if self.kind == 'recorded-gap' else 'HOLE'} in {where}: {self.detail}"
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


_UNCOUNTED = "; any generations rotated out after it before the agent saw them are lost too, uncounted"


def check_sequence(
    markers: Iterable[MarkerName], ends: Mapping[tuple[str, str], int]
) -> tuple[list[Problem], list[str]]:
    """Check each source's generations against its markers; return the problems and the notes.

    ``ends`` maps each (source, stream) that has chunks to the byte its reassembly reached.
    """
    by_source: dict[str, list[MarkerName]] = {}
    for marker in markers:
        by_source.setdefault(marker.source, []).append(marker)
    for source, _stream in ends:
        by_source.setdefault(source, [])
    problems: list[Problem] = []
    notes: list[str] = []
    for source in sorted(by_source):
        found, noted = _check_source(source, sorted(set(by_source[source])), ends)
        problems += found
        notes += noted
    return problems, notes


def _check_source(
    source: str, markers: list[MarkerName], ends: Mapping[tuple[str, str], int]
) -> tuple[list[Problem], list[str]]:
    present = {stream for (src, stream) in ends if src == source} | {m.stream for m in markers}
    gaps = [m for m in markers if m.kind == "gap"]
    problems = [
        Problem(
            "recorded-gap",
            source,
            m.stream,
            m.start,
            m.start if m.end is None else m.end,
            f"the agent recorded bytes {m.start}-{'end' if m.end is None else m.end} as lost ({m.reason})"
            + (_UNCOUNTED if m.end is None and m.reason == "deleted" else ""),
        )
        for m in gaps
    ]
    notes: list[str] = []
    named = {m.previous for m in markers if m.previous is not None}
    numbers = sorted(int(stream[1:]) for stream in present | named)
    for number in range(numbers[0], numbers[-1] + 1) if numbers else ():
        stream = stream_name(number)
        if stream not in present:
            detail = f"generation {stream} is missing: no object and no record of it in the bucket"
            problems.append(Problem("hole", source, stream, 0, 0, detail))
    for record in (m for m in markers if m.kind == "generation" and m.previous is not None):
        previous = record.previous or ""
        if record.copytruncated:
            notes.append(
                f"{source}/{previous} ends at a copytruncate: lines written between the copy and the "
                "truncate were never readable"
            )
        have = ends.get((source, previous), 0)
        covered = any(g.stream == previous and g.start <= have for g in gaps)
        if record.length is not None and have < record.length and not covered and previous in present:
            detail = (
                f"the bucket holds bytes 0-{have} but {record.stream}'s record says {previous} "
                f"ended at byte {record.length}"
            )
            problems.append(Problem("hole", source, previous, have, record.length, detail))
    return problems, notes
