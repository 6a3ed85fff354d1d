"""File sources: fixed paths and globs, each followed through every rotation as numbered generations.

A :class:`FileTail` binds each generation to a file by identity (:mod:`agent.identity`: device, inode,
head and tail fingerprints), not by name, and ships generations strictly in order, each exactly once:

- **rename rotation** (numbered, ``dateext``, kubelet's timestamps): the path now names another file.
  The old file is finished through the handle already open, however far it was renamed meanwhile;
  its successor is the next newer file among the log's rotated names (:mod:`agent.siblings`), which
  may itself be rotated (several rotations while the agent was behind), or compressed (read through
  gzip).
- **copytruncate**: the open file shrank below the shipped offset, or its bytes before the offset
  changed. The unsent tail is finished from the copy, found by fingerprint; then the truncated file
  starts the next generation, whose record is marked ``copytruncated``.
- **restart**: the durable :class:`~agent.checkpoint.Position` names the generation's file; it is
  looked for among the log's files by inode, then by fingerprint (a copy or a ``.gz``).
- **loss**: a generation that cannot be found (deleted before it was read), a ``.gz`` that cannot be
  read, or a truncation with no copy, is written down as a gap record; every generation's first
  objects include its generation record naming its predecessor (:mod:`keysvc.wire.objectnames`).

Unsent data stays in the source file: the tail only remembers offsets. Journald spools are tailed
too (``limit`` is the committed spool size), without rotation.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
from pathlib import Path

import structlog

from agent.checkpoint import Position, StateStore
from agent.chunking import source_id
from agent.discovery import EmptyReader, Finder, OpenFile
from agent.identity import (
    EMPTY_SHA256,
    HEAD_BYTES,
    Expected,
    digest,
    tail_fingerprint,
    tail_start,
)
from keysvc.wire import gap_suffix, generation_suffix, stream_name

log = structlog.get_logger()

_GLOB_CHARS = frozenset("*?[")
#: Finished generations remembered per source, so a file holding one is never shipped again.
HISTORY = 16


def fingerprint(fd: int, end: int) -> tuple[int, str]:
    """Return ``(start, sha256)`` of the up to 64 bytes of ``fd`` before ``end``."""
    start = tail_start(end)
    return start, digest(os.pread(fd, end - start, start))


class FileTail:
    """One source path followed through rotation, truncation and restarts, generation by generation."""

    def __init__(
        self, path: str, store: StateStore, *, spec: str | None = None, skip: set[tuple[int, int]]
    ) -> None:
        self.path = path
        self.spec = spec or path
        self.source_id = source_id(self.spec)
        self.store = store
        self.skip = skip
        self.finder = Finder(path, skip)
        self.current: OpenFile | None = None
        self.offset = 0
        self.last_size = 0
        self.pending_since: float | None = None
        self.last_growth = 0.0
        self.limit: int | None = None
        self.head: tuple[int, str] = (0, EMPTY_SHA256)
        #: Marker suffixes to ship before the current generation's next bytes.
        self.markers: list[str] = []
        self._fp: tuple[int, str] = (0, EMPTY_SHA256)
        self._next_generation = 1
        self._previous: tuple[int, int | None] | None = None
        self._lost: list[str] = []
        self._copytruncated = False

    # markers --------------------------------------------------------------------------------
    def _gap(self, generation: int, start: int, end: int | None, reason: str) -> None:
        log.warning(
            "source_gap", source=self.source_id, generation=generation, start=start, end=end, reason=reason
        )
        self._lost.append(gap_suffix(self.source_id, stream_name(generation), start, end, reason))

    def _record(self, generation: int) -> str:
        previous = self._previous
        if previous is None:
            return generation_suffix(self.source_id, stream_name(generation), None, None)
        return generation_suffix(
            self.source_id,
            stream_name(generation),
            stream_name(previous[0]),
            previous[1],
            self._copytruncated,
        )

    # binding generations to files -----------------------------------------------------------
    def _begin(self, opened: OpenFile, generation: int, now: float) -> None:
        if self.current is not None and self.current is not opened:
            self.current.close()
        lost = self._lost
        if isinstance(opened.reader, EmptyReader):
            lost = [*lost, gap_suffix(self.source_id, stream_name(generation), 0, None, "unreadable")]
        self.markers = [*self.markers, *lost, self._record(generation)]
        self._lost, self._previous, self._copytruncated = [], None, False
        opened.generation = generation
        self._next_generation = generation + 1
        self.current = opened
        self.offset = self.last_size = 0
        self.last_growth = now
        self._fp = (0, EMPTY_SHA256)
        self.head = (0, EMPTY_SHA256)
        self._update_head()
        self._mark_backlog()
        log.info("source_generation_started", source=self.source_id, path=self.path, generation=generation)

    def _bind(self, opened: OpenFile) -> None:
        """Make a first generation's file durable before anything ships: rotations after a crash are then
        found from it. Offset 0 claims nothing, so this is still only the acknowledged prefix."""
        self.store.save_position(
            Position(self.source_id, self.path, 1, 0, opened.dev, opened.ino, 0, EMPTY_SHA256, *self.head)
        )

    def _continue(self, opened: OpenFile, position: Position, now: float) -> None:
        opened.generation = position.generation
        self._next_generation = position.generation + 1
        self.current = opened
        self.offset = self.last_size = position.offset
        self.last_growth = now
        self._fp = (position.fp_start, position.fingerprint)
        self.head = (position.head_len, position.head)
        self._update_head()
        self._mark_backlog()

    def _mark_backlog(self) -> None:
        # Bytes already there when a file is opened have waited long enough: ship them at once.
        self.pending_since = float("-inf") if self.available() > self.offset or self.markers else None

    def _update_head(self) -> None:
        if self.current is not None and self.head[0] < HEAD_BYTES:
            data = self.current.reader.read(0, HEAD_BYTES)
            if len(data) > self.head[0]:
                self.head = (len(data), digest(data))

    def _current_expected(self, current: OpenFile) -> Expected:
        return Expected(current.dev, current.ino, self.offset, *self.head, *self._fp)

    def _resume(self, position: Position | None, now: float) -> None:
        if position is None:
            opened = self.finder.live()
            if opened is not None:
                self._begin(opened, 1, now)
                self._bind(opened)
            return
        self._next_generation = position.generation + 1
        expected = self.finder.expected(position)
        opened = self.finder.locate(expected)
        if opened is not None:
            if isinstance(opened.reader, EmptyReader):
                self._gap(position.generation, position.offset, None, "unreadable")
            # Found in another inode while the live file has the old one: a copytruncate, or the old
            # inode freed (compressed) and reused by the new file. Both get the (harmless) mark.
            moved = (opened.dev, opened.ino) != (position.dev, position.ino)
            self._copytruncated = moved and self.finder.live_identity() == (position.dev, position.ino)
            self._continue(opened, position, now)
            return
        log.warning(
            "source_generation_not_found",
            source=self.source_id,
            generation=position.generation,
            offset=position.offset,
            why=self.finder.explain(expected),
        )
        reason = "truncated" if self.finder.live_head_is(expected) else "deleted"
        self._gap(position.generation, position.offset, None, reason)
        self._previous = (position.generation, None)
        self._copytruncated = reason == "truncated"
        history = self.store.load_history(self.source_id)
        opened = self.finder.live() if reason == "truncated" else self.finder.successor(None, None, history)
        if opened is not None:
            self._begin(opened, position.generation + 1, now)

    def start(self, now: float) -> None:
        """Open the source from its durable position (call after pending intents are delivered)."""
        self._resume(self.store.load_position(self.source_id), now)

    # following ------------------------------------------------------------------------------
    def refresh(self, now: float) -> None:
        """Notice growth, truncation, rotation and deletion; open the next generation once it exists."""
        if self.current is None:
            opened = self._waiting_successor()
            if opened is not None:
                first = self._previous is None and self._next_generation == 1
                self._begin(opened, self._next_generation, now)
                if first:
                    self._bind(opened)
            return
        current = self.current
        size = self.available()
        if not current.reader.compressed and self._rewritten(size):
            self._truncated(current, now)
            current = self.current
            size = self.available()
        if size > self.last_size:
            self.last_growth = now
            self.last_size = size
            self._update_head()
        if size > self.offset and self.pending_since is None:
            self.pending_since = now
        if (
            not current.draining
            and self.limit is None
            and self.finder.live_identity() != (current.dev, current.ino)
        ):
            log.info("source_rotated", source=self.source_id, path=self.path, generation=current.generation)
            current.draining = True

    def _waiting_successor(self) -> OpenFile | None:
        if self._previous is None and self._next_generation == 1:
            return self.finder.live()
        return self.finder.successor(None, None, self.store.load_history(self.source_id))

    def _truncated(self, current: OpenFile, now: float) -> None:
        """The open file shrank or changed below the offset: finish from the copy, else record the loss."""
        generation = current.generation
        log.warning("source_truncated", source=self.source_id, path=self.path, size=self.available())
        copy = self.finder.locate(self._current_expected(current), exclude=(current.dev, current.ino))
        self._copytruncated = True
        if copy is not None:
            log.info("source_finishing_from_copy", source=self.source_id, generation=generation)
            current.close()
            copy.generation, copy.draining = generation, True
            self.current = copy
            self.last_size = self.offset
            return
        if self.last_size > self.offset:
            self._gap(generation, self.offset, self.last_size, "truncated")
        self._previous = (generation, self.offset)
        self._begin(current, generation + 1, now)

    def _rewritten(self, size: int) -> bool:
        """Whether the open file shrank, or its bytes before the offset or its head changed."""
        if size < self.offset or size < self.last_size:
            return True
        if size == self.last_size:
            return False
        if self.offset and not self._fingerprint_ok():
            return True
        head_len, head = self.head
        return (
            head_len > 0
            and self.current is not None
            and digest(self.current.reader.read(0, head_len)) != head
        )

    def _fingerprint_ok(self) -> bool:
        if self.current is None:
            return True
        start = self._fp[0]
        return digest(self.current.reader.read(start, self.offset - start)) == self._fp[1]

    def available(self) -> int:
        """Return how many bytes of the current generation exist (the spool's committed size for journald)."""
        if self.current is None:
            return 0
        size = self.current.size()
        return size if self.limit is None else min(size, self.limit)

    def read(self, start: int, length: int) -> bytes:
        """Read up to ``length`` bytes of the current generation from ``start``."""
        if self.current is None:
            return b""
        length = max(0, min(length, self.available() - start))
        return self.current.reader.read(start, length) if length else b""

    def shipped(self, end: int, fp: tuple[int, str]) -> None:
        """Record that bytes up to ``end`` (and the markers) are staged; the next chunk starts there."""
        self.offset = end
        self._fp = fp
        self.markers = []
        if self.available() <= end:
            self.pending_since = None

    def drained(self, now: float, quiet_for: float = 0.0) -> bool:
        """If a rotated file is shipped to its end and quiet for ``quiet_for`` s, move on; True then.

        Waiting for quiet catches lines a writer still appends through its old handle just after a
        rename. The file stays open until the next generation's file is found, so its inode cannot be
        reused meanwhile and anchors the search.
        """
        current = self.current
        if current is None or not current.draining or self.markers or self.available() > self.offset:
            return False
        if now - self.last_growth < quiet_for:
            return False
        finished = self._current_expected(current)
        done = [*self.store.load_history(self.source_id), finished][-HISTORY:]
        opened = self.finder.successor((current.dev, current.ino), finished, done)
        if opened is None:
            return False
        self.store.save_history(self.source_id, done)
        self._previous = (current.generation, self.offset)
        self._begin(opened, current.generation + 1, now)
        return True

    def close(self) -> None:
        """Close the open handle."""
        if self.current is not None:
            self.current.close()
            self.current = None


def fingerprint_of(data: bytes, end: int) -> tuple[int, str]:
    """Return the fingerprint of the bytes before ``end`` from ``data``, which must end at ``end``."""
    return tail_fingerprint(data, end)


def is_glob(spec: str) -> bool:
    """Return True when a source spec is a glob pattern."""
    return any(char in spec for char in _GLOB_CHARS)


def expand(spec: str) -> list[str]:
    """Return the regular files a glob spec matches now, sorted."""
    return sorted(path for path in glob.glob(spec) if Path(path).is_file())  # noqa: PTH207 - absolute patterns


def own_output_identities() -> set[tuple[int, int]]:
    """Return (device, inode) of whatever the agent's stdout/stderr write to, so it never tails itself."""
    identities = set()
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                identities.add((info.st_dev, info.st_ino))
    return identities
