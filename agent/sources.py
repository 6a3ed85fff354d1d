"""Log sources on the node: files (fixed paths and globs) and journald units, read in fixed-size blocks.

A :class:`FileTail` follows one path through rotation:

- **rename rotation / deletion**: the path now names another file (or none). The old file is
  finished through the handle already open (its generation ends with whatever it holds, partial last
  line included), then the new file starts a new generation at byte 0.
- **copytruncate**: the open file shrank below what was shipped, or the bytes just before the shipped
  offset changed (checked with a fingerprint): a new generation starts at byte 0 of the same file.
- **restart**: the durable :class:`~agent.checkpoint.Position` says which file (device, inode) and
  offset; when the path now names another file, the old one is looked for in the same directory by
  its inode (a rename rotation while the agent was down) and finished first.

Unsent data stays in the source file: the tail only remembers offsets, and reads at most one chunk
plus redaction context at a time. A :class:`JournalSpool` runs ``journalctl`` with a cursor and
appends its output to a spool file in the state directory, which is then tailed like any file; the
cursor and the spool size are committed together, so a crash never duplicates or drops an entry.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.checkpoint import JournalState, Position, StateStore
from agent.chunking import source_id

log = structlog.get_logger()

FINGERPRINT_BYTES = 64
OWN_UNITS = frozenset({"nodelogs-agent", "nodelogs-agent.service"})
_GLOB_CHARS = frozenset("*?[")


def fingerprint(fd: int, end: int) -> tuple[int, str]:
    """Return ``(start, sha256)`` of the up to 64 bytes of ``fd`` before ``end``."""
    start = max(0, end - FINGERPRINT_BYTES)
    data = os.pread(fd, end - start, start)
    return start, hashlib.sha256(data).hexdigest()


def fingerprint_of(data: bytes, end: int) -> tuple[int, str]:
    """Return the fingerprint of the bytes before ``end`` from ``data``, which must end at ``end``.

    ``data`` must reach back at least 64 bytes (or to byte 0) so it equals :func:`fingerprint`.
    """
    tail = data[-FINGERPRINT_BYTES:]
    return end - len(tail), hashlib.sha256(tail).hexdigest()


@dataclass(slots=True)
class OpenFile:
    """A file the tail reads: its handle, identity and the generation it feeds."""

    fd: int
    dev: int
    ino: int
    generation: int
    draining: bool = False

    def size(self) -> int:
        """Return the file's current size through its handle."""
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        """Close the handle."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


class FileTail:
    """One source path followed through rotation, truncation and restarts."""

    def __init__(
        self, path: str, store: StateStore, *, spec: str | None = None, skip: set[tuple[int, int]]
    ) -> None:
        self.path = path
        self.spec = spec or path
        self.source_id = source_id(self.spec)
        self.store = store
        self.skip = skip
        self.current: OpenFile | None = None
        self.offset = 0
        self.last_size = 0
        self.pending_since: float | None = None
        self.last_growth = 0.0
        self._next_generation = 1
        self._fp: tuple[int, str] | None = None
        self.limit: int | None = None

    # opening --------------------------------------------------------------------------------
    def _open(self, path: str) -> OpenFile | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) in self.skip:
            os.close(fd)
            return None
        return OpenFile(fd=fd, dev=info.st_dev, ino=info.st_ino, generation=0)

    def _find_rotated(self, position: Position) -> OpenFile | None:
        """Look in the path's directory for the file the position names (renamed while we were down)."""
        directory = str(Path(self.path).parent)
        try:
            entries = os.scandir(directory)
        except OSError:
            return None
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) == (position.dev, position.ino) and entry.is_file():
                    return self._open(entry.path)
        return None

    def _resume(self, position: Position | None, now: float) -> None:
        opened = self._open(self.path)
        if position is None:
            if opened is not None:
                self._start(opened, 1, now)
            return
        self._next_generation = position.generation + 1
        if opened is not None and (opened.dev, opened.ino) == (position.dev, position.ino):
            if self._still_matches(opened, position):
                self._continue(opened, position, now)
            else:
                log.warning("source_rewritten_while_down", source=self.source_id, path=self.path)
                self._start(opened, position.generation + 1, now)
            return
        rotated = self._find_rotated(position)
        if rotated is not None and self._still_matches(rotated, position):
            log.info("source_finishing_rotated_file", source=self.source_id, path=self.path)
            rotated.draining = True
            self._continue(rotated, position, now)
            if opened is not None:
                opened.close()
            return
        if rotated is not None:
            rotated.close()
        if opened is not None:
            self._start(opened, position.generation + 1, now)

    def _mark_backlog(self) -> None:
        # Bytes already there when a file is opened have waited long enough: ship them at once.
        self.pending_since = float("-inf") if self.available() > self.offset else None

    @staticmethod
    def _still_matches(opened: OpenFile, position: Position) -> bool:
        if opened.size() < position.offset:
            return False
        return fingerprint(opened.fd, position.offset) == (position.fp_start, position.fingerprint)

    def _continue(self, opened: OpenFile, position: Position, now: float) -> None:
        opened.generation = position.generation
        self.current = opened
        self.offset = position.offset
        self.last_size = position.offset
        self.last_growth = now
        self._fp = (position.fp_start, position.fingerprint)
        self._mark_backlog()

    def _start(self, opened: OpenFile, generation: int, now: float) -> None:
        if self.current is not None and self.current is not opened:
            self.current.close()
        opened.generation = generation
        opened.draining = False
        self._next_generation = generation + 1
        self.current = opened
        self.offset = 0
        self.last_size = 0
        self.last_growth = now
        self._fp = None
        self._mark_backlog()
        log.info("source_generation_started", source=self.source_id, path=self.path, generation=generation)

    def start(self, now: float) -> None:
        """Open the source from its durable position (call after pending intents are delivered)."""
        self._resume(self.store.load_position(self.source_id), now)

    # following ------------------------------------------------------------------------------
    def refresh(self, now: float) -> None:
        """Notice growth, truncation, rotation and deletion; open the file once it exists."""
        if self.current is None:
            opened = self._open(self.path)
            if opened is not None:
                self._start(opened, self._next_generation, now)
            return
        current = self.current
        size = self.available()
        if (
            size < self.offset
            or size < self.last_size
            or (size != self.last_size and self.offset and not self._fingerprint_ok())
        ):
            log.warning("source_truncated", source=self.source_id, path=self.path, size=size)
            self._start(current, current.generation + 1, now)
            size = self.available()
        if size > self.last_size:
            self.last_growth = now
            self.last_size = size
        if size > self.offset and self.pending_since is None:
            self.pending_since = now
        if not current.draining and self.limit is None:
            try:
                info = Path(self.path).stat()
                moved = (info.st_dev, info.st_ino) != (current.dev, current.ino)
            except OSError:
                moved = True
            if moved:
                log.info(
                    "source_rotated", source=self.source_id, path=self.path, generation=current.generation
                )
                current.draining = True

    def _fingerprint_ok(self) -> bool:
        if self.current is None or self._fp is None:
            return True
        return fingerprint(self.current.fd, self.offset) == self._fp

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
        chunks = []
        while length > 0:
            data = os.pread(self.current.fd, length, start)
            if not data:
                break
            chunks.append(data)
            start += len(data)
            length -= len(data)
        return b"".join(chunks)

    def shipped(self, end: int, fp: tuple[int, str]) -> None:
        """Record that bytes up to ``end`` are staged; the next chunk starts there."""
        self.offset = end
        self._fp = fp
        if self.available() <= end:
            self.pending_since = None

    def drained(self, now: float, quiet_for: float = 0.0) -> bool:
        """If a rotated file is shipped to its end and quiet for ``quiet_for`` s, close it; return True then.

        Waiting for quiet catches lines a writer still appends through its old handle just after a
        rename, before it reopens the path.
        """
        current = self.current
        if current is None or not current.draining or self.available() > self.offset:
            return False
        if now - self.last_growth < quiet_for:
            return False
        current.close()
        self.current = None
        self._next_generation = current.generation + 1
        self.pending_since = None
        opened = self._open(self.path)
        if opened is not None:
            self._start(opened, self._next_generation, now)
        return True

    def close(self) -> None:
        """Close the open handle."""
        if self.current is not None:
            self.current.close()
            self.current = None


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


class JournalSpool:
    """Copies a journald unit's entries (``journalctl`` with a cursor) into an append-only spool file.

    ``directory`` reads the journal files there (``journalctl --directory``) instead of the system
    journal; ``--boot`` then means the latest boot those files hold.
    """

    def __init__(
        self,
        unit: str,
        store: StateStore,
        journalctl: str | None = None,
        *,
        directory: str | None = None,
    ) -> None:
        self.unit = unit
        self.directory = directory
        self.spec = f"journal:{unit}"
        self.source_id = source_id(self.spec)
        self.store = store
        self.journalctl = journalctl or shutil.which("journalctl")
        self.spool = store.journal / f"{self.source_id}.log"
        state = store.load_journal(self.source_id)
        self.state = state or JournalState(cursor="", spool_size=0)
        fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, self.state.spool_size)
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def usable(unit: str) -> str | None:
        """Return why a unit cannot be followed here, or ``None`` when it can."""
        if unit in OWN_UNITS or f"{unit}.service" in OWN_UNITS:
            return "it is the agent's own unit (the agent never tails its own logs)"
        if shutil.which("journalctl") is None:
            return "journalctl is not installed on this node"
        return None

    def pull(self, timeout: float = 10.0) -> int:
        """Append new entries to the spool and commit the cursor; return the committed spool size."""
        if self.journalctl is None:
            return self.state.spool_size
        argv = [
            self.journalctl,
            "--unit",
            self.unit,
            "--output",
            "short-iso",
            "--all",
            "--no-pager",
            "--quiet",
            "--show-cursor",
        ]
        if self.directory is not None:
            argv.append(f"--directory={self.directory}")
        argv += ["--after-cursor", self.state.cursor] if self.state.cursor else ["--boot"]
        with self.spool.open("r+b") as spool:
            spool.seek(self.state.spool_size)
            spool.truncate()
            try:
                done = subprocess.run(
                    argv, stdout=spool, stderr=subprocess.PIPE, timeout=timeout, check=False
                )
                if done.returncode != 0:  # e.g. a cursor the journal no longer has (vacuumed)
                    detail = done.stderr[-300:].decode("utf-8", "replace")
                    log.warning("journalctl_failed", unit=self.unit, code=done.returncode, detail=detail)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("journalctl_failed", unit=self.unit, error=str(exc))
                spool.truncate(self.state.spool_size)
                return self.state.spool_size
            end = spool.seek(0, os.SEEK_END)
            tail_start = max(self.state.spool_size, end - 4096)
            spool.seek(tail_start)
            tail = spool.read()
            marker = tail.rfind(b"\n-- cursor: ")
            if marker < 0:  # no new entries (or journalctl died before printing its cursor)
                spool.truncate(self.state.spool_size)
                return self.state.spool_size
            cursor = tail[marker + len(b"\n-- cursor: ") :].strip().decode("ascii", "replace")
            new_size = tail_start + marker + 1
            spool.truncate(new_size)
            spool.flush()
            os.fsync(spool.fileno())
        if cursor and new_size >= self.state.spool_size:
            self.state = JournalState(cursor=cursor, spool_size=new_size)
            self.store.save_journal(self.source_id, self.state)
        return self.state.spool_size
