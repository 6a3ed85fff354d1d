"""An in-memory store: the :class:`~keysvc.service.ports.Store` port with no database, for unit tests.

It keeps the same rules as the SQL schema (one live key per node, a hash exactly while live,
conditional state changes) so the service's tests can run without SQLite or PostgreSQL, and the
store contract suite runs over it next to the real stores. A write transaction works on a copy of
the state under one lock and publishes it only on commit, so a failed transaction changes nothing.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from keysvc.core.auditchain import ChainHead
from keysvc.core.models import AuditFilter, AuditRecord, KeyFilter, KeyRecord, KeyState
from keysvc.errors import Conflict

SCHEMA_VERSION = 2


@dataclass
class _State:
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    sources: set[tuple[str, str]] = field(default_factory=set)
    audit: list[AuditRecord] = field(default_factory=list)
    head: ChainHead | None = None


def _matches(rec: KeyRecord, where: KeyFilter) -> bool:
    wanted = (
        (where.cluster, rec.cluster),
        (where.node, rec.node),
        (where.instance, rec.instance),
        (where.operation_id, rec.operation_id),
        (where.state, rec.state),
        (where.replayed, rec.replays > 0),
    )
    return all(want is None or want == have for want, have in wanted)


def _audit_matches(record: AuditRecord, where: AuditFilter) -> bool:
    event = record.event
    return (
        (where.since is None or event.at >= where.since)
        and (where.until is None or event.at < where.until)
        and (where.cluster is None or event.cluster == where.cluster)
        and (where.node is None or event.node == where.node)
        and (where.event is None or event.event == where.event)
        and (where.key_id is None or event.key_id == where.key_id)
    )


class MemoryTransaction:
    """Reads and writes over one private copy of the state."""

    def __init__(self, state: _State) -> None:
        self._state = state

    def get_key(self, key_id: str) -> KeyRecord | None:
        """Return the key with this id, or None."""
        return self._state.keys.get(key_id)

    def find_keys(self, where: KeyFilter) -> list[KeyRecord]:
        """Return matching keys, oldest issued first."""
        found = [rec for rec in self._state.keys.values() if _matches(rec, where)]
        return sorted(found, key=lambda rec: (rec.issued_at, rec.key_id))

    def audit_records(self, where: AuditFilter) -> list[AuditRecord]:
        """Return matching audit records in seq order; ``limit`` keeps the most recent."""
        found = [record for record in self._state.audit if _audit_matches(record, where)]
        return found[-where.limit :] if where.limit is not None else found

    def iter_audit(self) -> Iterator[AuditRecord]:
        """Yield every audit record in seq order."""
        yield from list(self._state.audit)

    def audit_head(self) -> ChainHead | None:
        """Return the signed chain head, or None."""
        return self._state.head

    def insert_key(self, record: KeyRecord) -> None:
        """Store a new key; :class:`Conflict` for a duplicate id or a second live key for a node."""
        if record.key_id in self._state.keys:
            raise Conflict("the store refused a change that breaks a uniqueness rule (key id)")
        if record.state is KeyState.LIVE and self.find_keys(
            KeyFilter(cluster=record.cluster, node=record.node, state=KeyState.LIVE)
        ):
            raise Conflict("the store refused a change that breaks a uniqueness rule (one live key per node)")
        self._state.keys[record.key_id] = record

    def _live(self, key_id: str) -> KeyRecord | None:
        rec = self._state.keys.get(key_id)
        return rec if rec is not None and rec.state is KeyState.LIVE else None

    def end_key(self, key_id: str, state: KeyState, *, at: float, reason: str) -> bool:
        """Move a live key to ``state`` and delete its hash; only a live key changes."""
        rec = self._live(key_id)
        if rec is None:
            return False
        ended = replace(rec, state=state, key_hash=None, session_hash=None, ended_at=at, end_reason=reason)
        self._state.keys[key_id] = ended
        return True

    def exchange(self, key_id: str, *, nonce_hash: bytes, session_hash: bytes, at: float) -> bool:
        """Install a session for a live key never exchanged, or exchanged with this same nonce."""
        rec = self._live(key_id)
        if rec is None or rec.nonce_hash not in (None, nonce_hash):
            return False
        self._state.keys[key_id] = replace(
            rec,
            nonce_hash=nonce_hash,
            session_hash=session_hash,
            exchanged_at=at,
            exchanges=rec.exchanges + 1,
        )
        return True

    def record_replay(self, key_id: str, *, at: float) -> int:
        """Count one refused replay of a key; return the new count (0 for an unknown key)."""
        rec = self._state.keys.get(key_id)
        if rec is None:
            return 0
        self._state.keys[key_id] = replace(rec, replays=rec.replays + 1, last_replay_at=at)
        return rec.replays + 1

    def bind_instance(self, key_id: str, instance: str) -> bool:
        """Bind a live, not yet bound key to ``instance``; only such a key changes."""
        rec = self._live(key_id)
        if rec is None or rec.instance is not None:
            return False
        self._state.keys[key_id] = replace(rec, instance=instance)
        return True

    def record_use(self, key_id: str, *, at: float, source: str) -> tuple[int, bool]:
        """Count one use; remember the source address the first time it is seen."""
        rec = self._live(key_id)
        if rec is None:
            raise Conflict("the key stopped being live during the request")
        self._state.keys[key_id] = replace(rec, uses=rec.uses + 1, last_used_at=at)
        fresh = (key_id, source) not in self._state.sources
        self._state.sources.add((key_id, source))
        return rec.uses + 1, fresh

    def expired_live_keys(self, now: float) -> list[KeyRecord]:
        """Return live keys past their expiry."""
        found = [r for r in self._state.keys.values() if r.state is KeyState.LIVE and r.expires_at <= now]
        return sorted(found, key=lambda rec: (rec.expires_at, rec.key_id))

    def lock_audit_head(self) -> ChainHead | None:
        """Return the head; the store's lock already serializes every writer."""
        return self._state.head

    def append_audit(self, record: AuditRecord) -> None:
        """Store a sealed audit record; its seq must follow the last one."""
        if any(existing.seq == record.seq for existing in self._state.audit[-1:]):
            raise Conflict("the store refused a change that breaks a uniqueness rule (audit seq)")
        self._state.audit.append(record)

    def write_audit_head(self, head: ChainHead) -> None:
        """Replace the signed chain head."""
        self._state.head = head


class MemoryStore:
    """The whole state in one process's memory; gone when the process ends."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        """A write transaction on a copy of the state; published only when the block exits normally."""
        with self._lock:
            draft = _State(
                keys=dict(self._state.keys),
                sources=set(self._state.sources),
                audit=list(self._state.audit),
                head=self._state.head,
            )
            yield MemoryTransaction(draft)
            self._state = draft

    @contextlib.contextmanager
    def read(self) -> Iterator[MemoryTransaction]:
        """A snapshot: a copy nobody else changes."""
        with self._lock:
            snapshot = copy.copy(self._state)
        yield MemoryTransaction(snapshot)

    def migrate(self) -> int:
        """Nothing to migrate; return the schema version the SQL stores are at."""
        return SCHEMA_VERSION

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        """Nothing to release."""
