"""Durable agent state: per-source positions, upload intents and their staged chunks.

Layout under the state directory::

    positions/<source id>.json   where each source stands: generation, acknowledged offset, file identity
    intents/<source id>.json     the chunks staged for upload (at most one intent per source)
    staged/<source id>.<gen>.<start>-<end>.gz   the exact gzip bytes of each staged chunk
    journal/<source id>.json     journald sources: cursor and committed spool size
    history/<source id>.json     the identities of the source's last finished generations
    finished.json                the key is done (see :mod:`agent.keyfile`)

The upload protocol (:mod:`agent.runner`) keeps one rule: a position only ever advances to the end of
a chunk the bucket acknowledged. A chunk is staged (fsynced) and named in an intent (atomic, fsynced)
*before* its PUT; after a ``kill -9`` anywhere, the next run re-sends the intent's chunks byte for byte
(a 412 means "already there"), so objects never overlap and nothing is skipped.

Every file is written with :func:`agent.private_files.atomic_write`: temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory. A file that cannot be parsed, or whose
staged bytes do not match their recorded SHA-256, raises :class:`StateCorrupt` naming the file: the
agent refuses to start rather than guess (a guess could drop or duplicate data). Moving the named
file aside lets the source start over, which may re-ship bytes already in the bucket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import StateCorrupt
from agent.identity import EMPTY_SHA256, Expected
from agent.private_files import atomic_write, fsync_dir

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Position:
    """Where one source stands: every byte of ``generation`` before ``offset`` is in the bucket.

    ``dev``/``ino`` identify the file the generation reads; ``fingerprint`` is the SHA-256 of the
    bytes ``[fp_start, offset)`` so a file replaced or rewritten while the agent was down is noticed,
    and ``head`` the SHA-256 of its first ``head_len`` bytes, so the generation is found by content
    when it moved to another inode (a copy, a ``.gz``) and a reused inode is not mistaken for it.
    """

    source_id: str
    path: str
    generation: int
    offset: int
    dev: int
    ino: int
    fp_start: int
    fingerprint: str
    head_len: int = 0
    head: str = EMPTY_SHA256


@dataclass(frozen=True, slots=True)
class StagedChunk:
    """One object of an intent: the byte range, its suffix, and the staged file holding its body.

    A *marker* (a generation or gap record, see :mod:`keysvc.wire.objectnames`) has ``start == end``: it
    sits at the generation's byte 0, before its chunks.
    """

    start: int
    end: int
    suffix: str
    staged: str
    sha256: str
    fp_start: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Intent:
    """Chunks of one (source, generation) staged for upload, contiguous and in order."""

    source_id: str
    path: str
    generation: int
    dev: int
    ino: int
    chunks: tuple[StagedChunk, ...]
    head_len: int = 0
    head: str = EMPTY_SHA256


@dataclass(frozen=True, slots=True)
class JournalState:
    """A journald source: the cursor after the last entry spooled and the spool size it belongs to."""

    cursor: str
    spool_size: int


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateCorrupt(f"state file {path} cannot be read: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateCorrupt(f"state file {path} is not valid JSON; move it aside to start over") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateCorrupt(f"state file {path} has an unknown format; move it aside to start over")
    return data


_T = TypeVar("_T")
_SCALARS = {"int": int, "str": str}


def _build(cls: type[_T], data: Any, path: Path) -> _T:
    """Build a state record from parsed JSON, refusing missing, extra or wrongly typed fields."""
    if not isinstance(data, dict):
        raise StateCorrupt(f"state file {path} has missing or extra fields")
    try:
        record = cls(**data)
    except TypeError as exc:
        raise StateCorrupt(f"state file {path} has missing or extra fields") from exc
    for item in fields(record):  # type: ignore[arg-type]
        wanted = _SCALARS.get(str(item.type))
        if wanted is not None and type(getattr(record, item.name)) is not wanted:
            raise StateCorrupt(f"state file {path}: {item.name} is not of type {item.type}")
    return record


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps({"version": STATE_VERSION, **record}, sort_keys=True).encode()


class StateStore:
    """The state directory; every method is an atomic, durable step."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.positions = root / "positions"
        self.intents = root / "intents"
        self.staged = root / "staged"
        self.journal = root / "journal"
        self.history = root / "history"

    def open(self) -> StateStore:
        """Create the directories (mode 0700) and delete staged files no intent refers to."""
        for directory in (self.root, self.positions, self.intents, self.staged, self.journal, self.history):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in [*self.root.rglob(".*.tmp")]:
            leftover.unlink(missing_ok=True)
        referenced = {chunk.staged for intent in self.all_intents() for chunk in intent.chunks}
        for staged in self.staged.iterdir():
            if staged.name not in referenced:
                staged.unlink(missing_ok=True)
        return self

    # positions --------------------------------------------------------------------------------
    def load_position(self, source_id: str) -> Position | None:
        """Return the source's durable position, or ``None`` when it has never been acknowledged."""
        path = self.positions / f"{source_id}.json"
        data = _load_json(path)
        if data is None:
            return None
        data.pop("version")
        position = _build(Position, data, path)
        if position.source_id != source_id or position.offset < 0 or position.generation < 1:
            raise StateCorrupt(f"state file {path} does not add up (source, generation or offset)")
        return position

    def save_position(self, position: Position) -> None:
        """Durably record a new position."""
        atomic_write(self.positions / f"{position.source_id}.json", _dump(asdict(position)))

    # intents ----------------------------------------------------------------------------------
    def stage(
        self, source_id: str, generation: int, start: int, end: int, body: bytes, *, label: str = ""
    ) -> tuple[str, str]:
        """Write an object's bytes durably; return the staged file's name and SHA-256.

        ``label`` tells markers apart (they all sit at ``start == end == 0``).
        """
        name = f"{source_id}.g{generation}.{start}-{end}{label}.gz"
        path = self.staged / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return name, hashlib.sha256(body).hexdigest()

    def save_intent(self, intent: Intent) -> None:
        """Durably name the staged chunks that are about to be PUT."""
        record = asdict(intent)
        atomic_write(self.intents / f"{intent.source_id}.json", _dump(record))

    def load_intent(self, source_id: str) -> Intent | None:
        """Return the source's pending intent, checking every staged chunk is intact."""
        path = self.intents / f"{source_id}.json"
        data = _load_json(path)
        if data is None:
            return None
        data.pop("version")
        listed = data.pop("chunks", None)
        if not isinstance(listed, list):
            raise StateCorrupt(f"state file {path} has missing or extra fields")
        chunks = tuple(_build(StagedChunk, chunk, path) for chunk in listed)
        intent = _build(Intent, {**data, "chunks": chunks}, path)
        previous = None
        for chunk in intent.chunks:
            empty = chunk.start == chunk.end and not chunk.suffix.endswith(".gz")
            if (chunk.start >= chunk.end and not empty) or (previous is not None and chunk.start != previous):
                raise StateCorrupt(f"state file {path}: chunks are not contiguous")
            previous = chunk.end
            if hashlib.sha256(self.read_staged(chunk, path)).hexdigest() != chunk.sha256:
                raise StateCorrupt(f"staged chunk {self.staged / chunk.staged} does not match intent {path}")
        return intent

    def all_intents(self) -> list[Intent]:
        """Every pending intent."""
        intents = []
        for path in sorted(self.intents.glob("*.json")):
            intent = self.load_intent(path.stem)
            if intent is not None:
                intents.append(intent)
        return intents

    def read_staged(self, chunk: StagedChunk, intent_path: Path | None = None) -> bytes:
        """Return a staged chunk's gzip bytes."""
        path = self.staged / chunk.staged
        try:
            return path.read_bytes()
        except OSError as exc:
            where = f" named by {intent_path}" if intent_path else ""
            raise StateCorrupt(f"staged chunk {path}{where} cannot be read: {exc.strerror}") from exc

    def drop_intent(self, intent: Intent) -> None:
        """Forget a fully delivered intent, then its staged files."""
        path = self.intents / f"{intent.source_id}.json"
        path.unlink(missing_ok=True)
        fsync_dir(self.intents)
        for chunk in intent.chunks:
            with contextlib.suppress(FileNotFoundError):
                (self.staged / chunk.staged).unlink()

    # journald ---------------------------------------------------------------------------------
    def load_journal(self, source_id: str) -> JournalState | None:
        """Return a journald source's cursor and committed spool size."""
        path = self.journal / f"{source_id}.json"
        data = _load_json(path)
        if data is None:
            return None
        data.pop("version")
        return _build(JournalState, data, path)

    def save_journal(self, source_id: str, state: JournalState) -> None:
        """Durably record a journald cursor together with the spool size it corresponds to."""
        atomic_write(self.journal / f"{source_id}.json", _dump(asdict(state)))

    # finished generations ---------------------------------------------------------------------
    def load_history(self, source_id: str) -> list[Expected]:
        """The identities (at their final length) of the source's last finished generations."""
        path = self.history / f"{source_id}.json"
        data = _load_json(path)
        if data is None:
            return []
        done = data.get("done")
        if not isinstance(done, list):
            raise StateCorrupt(f"state file {path} has missing or extra fields")
        return [_build(Expected, item, path) for item in done]

    def save_history(self, source_id: str, done: list[Expected]) -> None:
        """Durably record the source's last finished generations."""
        atomic_write(self.history / f"{source_id}.json", _dump({"done": [asdict(item) for item in done]}))
