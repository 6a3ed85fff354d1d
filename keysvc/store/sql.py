"""What the two SQL stores share, written once: the queries, the writes, the migration plan.

SQLite's driver takes ``?`` placeholders and psycopg takes ``%s``; apart from that, the reads and
most writes are the same SQL. An adapter subclasses :class:`SqlReader` / :class:`SqlWriter` and
supplies only what its database does differently: how a statement runs (and how its driver's
errors translate), row locking, and the audit-head writes. Column names come from constants, never
from callers; values always travel as parameters.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

from keysvc.core.auditchain import ChainHead
from keysvc.core.models import AuditFilter, AuditRecord, KeyFilter, KeyRecord, KeyState
from keysvc.errors import MigrationError
from keysvc.store.rows import (
    AUDIT_COLUMNS,
    HEAD_COLUMNS,
    KEY_COLUMNS,
    UNBOUND_INSTANCE,
    audit_from_row,
    head_from_row,
    instance_to_column,
    key_from_row,
    key_to_row,
)
from keysvc.store.schema import Migration

KEYS = ", ".join(KEY_COLUMNS)
AUDIT = ", ".join(AUDIT_COLUMNS)
HEAD = ", ".join(HEAD_COLUMNS)
SCHEMA_VERSION_EXISTS = "schema_version"


def _where(conditions: list[tuple[str, Any]], mark: str) -> tuple[str, list[Any]]:
    """Join ``column op`` conditions whose value is not None into a WHERE clause with parameters."""
    present = [(cond, value) for cond, value in conditions if value is not None]
    if not present:
        return "", []
    return " WHERE " + " AND ".join(f"{cond} {mark}" for cond, _ in present), [v for _, v in present]


def keys_query(where: KeyFilter, mark: str) -> tuple[str, list[Any]]:
    """SELECT the keys matching ``where``, oldest issued first."""
    clause, params = _where(
        [
            ("cluster =", where.cluster),
            ("node =", where.node),
            ("instance =", where.instance),
            ("operation_id =", where.operation_id),
            ("state =", where.state.value if where.state is not None else None),
            ("replays >", None if where.replayed is not True else 0),
            ("replays =", None if where.replayed is not False else 0),
        ],
        mark,
    )
    return f"SELECT {KEYS} FROM keys{clause} ORDER BY issued_at, key_id", params  # noqa: S608 - constants


def audit_query(where: AuditFilter, mark: str) -> tuple[str, list[Any]]:
    """SELECT the audit records matching ``where``, newest first (callers reverse), at most ``limit``."""
    clause, params = _where(
        [
            ("at >=", where.since),
            ("at <", where.until),
            ("cluster =", where.cluster),
            ("node =", where.node),
            ("event =", where.event.value if where.event is not None else None),
            ("key_id =", where.key_id),
        ],
        mark,
    )
    sql = f"SELECT {AUDIT} FROM audit_records{clause} ORDER BY seq DESC"  # noqa: S608 - constants
    if where.limit is not None:
        sql += f" LIMIT {mark}"
        params.append(where.limit)
    return sql, params


def pending_migrations(migrations: Sequence[Migration], current: int) -> list[Migration]:
    """Return the migrations newer than ``current``; :class:`MigrationError` if the database is newer."""
    known = max((m.version for m in migrations), default=0)
    if current > known:
        raise MigrationError(f"database schema version {current} is newer than this keysvc knows ({known})")
    return [m for m in migrations if m.version > current]


class SqlReader(abc.ABC):
    """The queries of read snapshots and write transactions, over one connection."""

    mark: ClassVar[str]
    lock_rows: ClassVar[str] = ""
    """Appended to SELECTs of rows a write transaction is about to change (PostgreSQL: FOR UPDATE)."""

    @abc.abstractmethod
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one query and return its rows, translating the driver's errors."""

    def get_key(self, key_id: str) -> KeyRecord | None:
        """Return the key with this id, or None (in a write transaction, locked until commit)."""
        rows = self._all(f"SELECT {KEYS} FROM keys WHERE key_id = {self.mark}{self.lock_rows}", (key_id,))  # noqa: S608
        return key_from_row(rows[0]) if rows else None

    def find_keys(self, where: KeyFilter) -> list[KeyRecord]:
        """Return matching keys, oldest issued first."""
        sql, params = keys_query(where, self.mark)
        if where.state is KeyState.LIVE:
            sql += self.lock_rows
        return [key_from_row(row) for row in self._all(sql, params)]

    def audit_records(self, where: AuditFilter) -> list[AuditRecord]:
        """Return matching audit records in seq order; ``limit`` keeps the most recent."""
        sql, params = audit_query(where, self.mark)
        return [audit_from_row(row) for row in reversed(self._all(sql, params))]

    def audit_head(self) -> ChainHead | None:
        """Return the signed chain head, or None."""
        rows = self._all(f"SELECT {HEAD} FROM audit_head WHERE id = 1")  # noqa: S608
        return head_from_row(rows[0]) if rows else None


class SqlWriter(SqlReader):
    """The writes both dialects spell the same way."""

    expired_lock: ClassVar[str] = ""
    """Appended to the sweeper's SELECT (PostgreSQL: FOR UPDATE SKIP LOCKED, so sweepers split work)."""

    @abc.abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return its row count, translating the driver's errors."""

    def insert_key(self, record: KeyRecord) -> None:
        """Store a new key; the partial unique index refuses a second live key for a node."""
        marks = ", ".join(self.mark for _ in KEY_COLUMNS)
        self._run(f"INSERT INTO keys ({KEYS}) VALUES ({marks})", key_to_row(record))  # noqa: S608

    def end_key(self, key_id: str, state: KeyState, *, at: float, reason: str) -> bool:
        """Move a live key to ``state`` and delete its hash; only a live key changes."""
        m = self.mark
        count = self._run(
            f"UPDATE keys SET state = {m}, key_hash = NULL, session_hash = NULL, ended_at = {m}, "  # noqa: S608
            f"end_reason = {m} "
            f"WHERE key_id = {m} AND state = 'live'",
            (state.value, at, reason, key_id),
        )
        return count == 1

    def bind_instance(self, key_id: str, instance: str) -> bool:
        """Bind a live, not yet bound key to ``instance``; only such a key changes."""
        m = self.mark
        count = self._run(
            f"UPDATE keys SET instance = {m} WHERE key_id = {m} AND state = 'live' AND instance = {m}",  # noqa: S608
            (instance_to_column(instance), key_id, UNBOUND_INSTANCE),
        )
        return count == 1

    def exchange(self, key_id: str, *, nonce_hash: bytes, session_hash: bytes, at: float) -> bool:
        """Install a session for a live key never exchanged, or exchanged with this same nonce.

        One conditional statement: two replicas racing with different nonces cannot both succeed.
        """
        m = self.mark
        count = self._run(
            f"UPDATE keys SET nonce_hash = {m}, session_hash = {m}, exchanged_at = {m}, "  # noqa: S608
            f"exchanges = exchanges + 1 WHERE key_id = {m} AND state = 'live' "
            f"AND (nonce_hash IS NULL OR nonce_hash = {m})",
            (nonce_hash, session_hash, at, key_id, nonce_hash),
        )
        return count == 1

    def record_replay(self, key_id: str, *, at: float) -> int:
        """Count one refused replay of a key; return the new count (0 for an unknown key)."""
        m = self.mark
        self._run(
            f"UPDATE keys SET replays = replays + 1, last_replay_at = {m} WHERE key_id = {m}",  # noqa: S608
            (at, key_id),
        )
        rows = self._all(f"SELECT replays FROM keys WHERE key_id = {m}", (key_id,))  # noqa: S608
        return int(rows[0][0]) if rows else 0

    def expired_live_keys(self, now: float) -> list[KeyRecord]:
        """Return live keys past their expiry (in PostgreSQL, those no other sweeper holds)."""
        rows = self._all(
            f"SELECT {KEYS} FROM keys WHERE state = 'live' AND expires_at <= {self.mark} "  # noqa: S608
            f"ORDER BY expires_at, key_id{self.expired_lock}",
            (now,),
        )
        return [key_from_row(row) for row in rows]
