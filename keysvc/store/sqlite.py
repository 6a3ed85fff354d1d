"""The embedded state store: SQLite (stdlib ``sqlite3``) in WAL mode.

- One connection per thread (FastAPI runs sync endpoints in a threadpool), each in autocommit mode so
  transactions are explicit: ``BEGIN IMMEDIATE`` for writes, which takes the write lock up front and so
  serializes audit appends across threads and processes; a deferred ``BEGIN`` for read snapshots.
- ``busy_timeout`` makes a writer wait for another instead of failing at once.
- The database file is created 0600 in a directory created 0700; SQLite gives its ``-wal`` and ``-shm``
  files the same mode.
- ``sqlite3`` errors are translated: a locked or unopenable database is :class:`StoreUnavailable`, a broken
  uniqueness rule is :class:`Conflict`, anything else :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from keysvc.core.auditchain import ChainHead
from keysvc.core.models import AuditRecord
from keysvc.errors import Conflict, KeysvcError, MigrationError, StoreError, StoreUnavailable
from keysvc.store import schema
from keysvc.store.rows import AUDIT_COLUMNS, audit_from_row, audit_to_row
from keysvc.store.sql import AUDIT, SqlWriter, pending_migrations
from keysvc.store.translation import translating

BUSY_TIMEOUT_MS = 10_000


def translate(exc: sqlite3.Error) -> KeysvcError:
    """Map an sqlite3 error onto keysvc's tree (the caller raises it ``from exc``)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"the store refused a change that breaks a uniqueness rule ({exc})")
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "locked" in text or "busy" in text or "unable to open" in text or "disk i/o" in text:
            return StoreUnavailable(f"sqlite: {exc}")
    return StoreError(f"sqlite: {exc}")


_translated = translating(sqlite3.Error, translate)


def path_from_url(database: str) -> Path:
    """Turn ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` into a path."""
    prefix = "sqlite:///"
    if not database.startswith(prefix) or len(database) == len(prefix):
        raise StoreError("a SQLite database URL looks like sqlite:///path/to/keysvc.db")
    return Path(database[len(prefix) :])


class SqliteTransaction(SqlWriter):
    """The queries and writes of one transaction the store opened (reads use it too, never writing)."""

    mark = "?"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @_translated
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return self._conn.execute(sql, params).fetchall()

    @_translated
    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def iter_audit(self) -> Iterator[AuditRecord]:
        """Yield every audit record in seq order."""
        try:
            cursor = self._conn.execute(f"SELECT {AUDIT} FROM audit_records ORDER BY seq")  # noqa: S608
            for row in cursor:
                yield audit_from_row(row)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    @_translated
    def record_use(self, key_id: str, *, at: float, source: str) -> tuple[int, bool]:
        """Count one use; remember the source address the first time it is seen."""
        row = self._conn.execute(
            "UPDATE keys SET uses = uses + 1, last_used_at = ? "
            "WHERE key_id = ? AND state = 'live' RETURNING uses",
            (at, key_id),
        ).fetchone()
        if row is None:
            raise Conflict("the key stopped being live during the request")
        cursor = self._conn.execute(
            "INSERT INTO key_sources (key_id, source, first_used_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key_id, source) DO NOTHING",
            (key_id, source, at),
        )
        return int(row[0]), cursor.rowcount == 1

    def lock_audit_head(self) -> ChainHead | None:
        """Return the head; ``BEGIN IMMEDIATE`` already holds the database write lock."""
        return self.audit_head()

    def append_audit(self, record: AuditRecord) -> None:
        """Store a sealed audit record."""
        marks = ", ".join("?" for _ in AUDIT_COLUMNS)
        self._run(f"INSERT INTO audit_records ({AUDIT}) VALUES ({marks})", audit_to_row(record))  # noqa: S608

    def write_audit_head(self, head: ChainHead) -> None:
        """Replace the signed chain head."""
        self._run(
            "INSERT INTO audit_head (id, seq, record_hash, signature, signer) VALUES (1, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, record_hash = excluded.record_hash, "
            "signature = excluded.signature, signer = excluded.signer",
            (head.seq, head.record_hash, head.signature, head.signer),
        )


class SqliteStore:
    """A SQLite database file, one connection per thread."""

    def __init__(
        self, path: Path, *, migrations: tuple[schema.Migration, ...] = schema.migrations(schema.SQLITE)
    ) -> None:
        self.path = path
        self._migrations = migrations
        self._local = threading.local()
        self._lock = threading.Lock()
        # Serializes this process's writers before SQLite sees them: BEGIN IMMEDIATE contention inside
        # one process otherwise lands in SQLite's busy handler, which sleeps in millisecond steps.
        # Other processes are still kept out by BEGIN IMMEDIATE and busy_timeout.
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._create_file()

    def _create_file(self) -> None:
        parent = self.path.parent
        try:
            if not parent.exists():
                parent.mkdir(mode=0o700, parents=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create database {self.path}: {exc.strerror}") from exc

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _unit(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise translate(exc) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        """A ``BEGIN IMMEDIATE`` write transaction: commits on normal exit, rolls back on error."""
        with self._write_lock, self._unit("BEGIN IMMEDIATE") as conn:
            yield SqliteTransaction(conn)

    @contextlib.contextmanager
    def read(self) -> Iterator[SqliteTransaction]:
        """A consistent snapshot (a deferred transaction over WAL)."""
        with self._unit("BEGIN") as conn:
            yield SqliteTransaction(conn)

    def schema_version(self) -> int:
        """Return the highest applied migration, 0 for a fresh database."""
        with self._unit("BEGIN") as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if exists is None:
                return 0
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply every migration newer than the database, in one ``BEGIN IMMEDIATE`` transaction."""
        with self._write_lock, self._unit("BEGIN IMMEDIATE") as conn:
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                for migration in pending_migrations(self._migrations, self._version(conn)):
                    for statement in migration.statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, name, applied_at) "
                        "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                        (migration.version, migration.name),
                    )
            except sqlite3.Error as exc:
                raise MigrationError(f"migration failed: {exc}") from exc
        return self.schema_version()

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` when the database cannot be read."""
        if not self.path.exists():
            raise StoreUnavailable(f"database {self.path} is gone")
        try:
            self._connection().execute("SELECT 1 FROM schema_version LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def close(self) -> None:
        """Close every connection this store opened, in any thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
