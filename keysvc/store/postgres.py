"""The replica store: PostgreSQL through psycopg 3 and a bounded psycopg_pool connection pool.

Several ``keysvc serve`` replicas share one database. What keeps them correct:

- **Migrations** run in one transaction under an advisory lock, so replicas starting together
  apply each migration exactly once.
- **Write transactions** run at READ COMMITTED. Rows a transaction is about to change are locked
  before anything else it takes (``get_key`` and live-key lookups use ``FOR UPDATE``), then the
  audit chain lock last; one order everywhere, so transactions wait for each other and never deadlock.
- **The audit chain** is one chain for all replicas: ``lock_audit_head`` reads the head row
  ``FOR UPDATE``, so appends serialize and each sees the head the previous one committed (an empty
  chain, with no row yet, queues its first appenders on an advisory lock). Locks are released by
  COMMIT or ROLLBACK, never by hand. The record and the new head go out in one statement, so the
  lock is held for as few round trips as possible.
- **One live key per node**: a live-key lookup that names a cluster and a node first takes an
  advisory lock for that node, then reads. A concurrent AddNode for the same node, on any replica,
  waits and then sees (and supersedes) the key the first one committed. The partial unique index
  ``keys_one_live_per_node`` stays as the schema's own guarantee.
- **The sweeper** selects expired keys ``FOR UPDATE SKIP LOCKED``: replicas sweeping at once
  split the work instead of repeating it, and ``end_key`` only changes a row that is still live.
- **No cache**: every read goes to the database.

Pool settings ride on the DSN as query parameters that are removed before libpq sees them::

    postgresql://keysvc@db.internal/keysvc?pool_min_size=2&pool_max_size=20&pool_timeout=5

``pool_timeout`` bounds the wait for a connection, and ``connect_timeout`` (libpq's own; 5 s unless
the DSN says otherwise) bounds each connection attempt. A connection that died while idle is
dropped when BEGIN fails on it and the transaction starts on another; the pool reconnects in the
background, so the store recovers by itself when the database comes back.

psycopg errors are translated: unreachable, timed out, deadlocked or shut down is
:class:`StoreUnavailable`; a broken uniqueness rule is :class:`Conflict`; anything
else is :class:`StoreError`. Messages carry PostgreSQL's primary message only, never row contents.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from keysvc.core.auditchain import ChainHead
from keysvc.core.models import AuditRecord, KeyFilter, KeyRecord, KeyState
from keysvc.errors import ConfigError, Conflict, KeysvcError, MigrationError, StoreError, StoreUnavailable
from keysvc.store import schema
from keysvc.store.postgres_url import describe, split_dsn
from keysvc.store.rows import AUDIT_COLUMNS, audit_from_row, audit_to_row, head_from_row
from keysvc.store.sql import AUDIT, HEAD, SqlWriter, pending_migrations
from keysvc.store.translation import translating

_INSERT_AUDIT = f"INSERT INTO audit_records ({AUDIT}) VALUES ({', '.join('%s' for _ in AUDIT_COLUMNS)})"  # noqa: S608
_INSERT_AUDIT_NAMED = (
    f"INSERT INTO audit_records ({AUDIT}) VALUES ({', '.join(f'%({c})s' for c in AUDIT_COLUMNS)})"  # noqa: S608
)
_UPSERT_HEAD = (
    "INSERT INTO audit_head (id, seq, record_hash, signature, signer) "
    "VALUES (1, %(head_seq)s, %(head_hash)s, %(head_signature)s, %(head_signer)s) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, record_hash = excluded.record_hash, "
    "signature = excluded.signature, signer = excluded.signer"
)

# Advisory lock keys: (namespace, id). Advisory locks are per database, so two keysvc databases on
# one server never contend. Node locks use their own namespace with a 32-bit hash of the node.
LOCK_NAMESPACE = 0x6B657973  # "keys"
CHAIN_LOCK = 1
MIGRATION_LOCK = 2
NODE_LOCK_NAMESPACE = 0x6E6F6465  # "node"

PING_TIMEOUT_SECONDS = 2.0
# How long the pool keeps retrying one lost connection (with exponential backoff from 1 s) before it
# gives up on it; the next request then starts a fresh attempt at once. Short, so that recovery
# after an outage takes seconds, not the minutes the backoff would otherwise grow to.
RECONNECT_SECONDS = 5.0
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
LOCK_TIMEOUT = "30s"
AUDIT_FETCH_ROWS = 1000


def translate(exc: psycopg.Error) -> KeysvcError:
    """Map a psycopg error onto keysvc's tree (the caller raises it ``from exc``)."""
    lines = str(exc).splitlines()
    primary = exc.diag.message_primary or (lines[0] if lines else "")
    code = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    if isinstance(exc, psycopg.IntegrityError):
        return Conflict(f"the store refused a change that breaks a uniqueness rule: {primary}{code}")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"postgresql: {primary or type(exc).__name__}{code}")
    return StoreError(f"postgresql: {primary or type(exc).__name__}{code}")


_translated = translating(psycopg.Error, translate)


def node_lock_key(cluster: str, node: str) -> int:
    """A stable signed 32-bit advisory lock id for one node (collisions only make unrelated nodes wait)."""
    digest = hashlib.sha256(f"{cluster}\x00{node}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


class PostgresReader(SqlWriter):
    """Queries over one pooled connection, inside a transaction the store opened."""

    mark = "%s"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def _execute(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(sql, params)

    @_translated
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return self._execute(sql, params).fetchall()

    @_translated
    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._execute(sql, params).rowcount

    def iter_audit(self) -> Iterator[AuditRecord]:
        """Yield every audit record in seq order, fetched in batches through a server-side cursor."""
        try:
            with self._conn.cursor(name="keysvc_iter_audit") as cursor:
                cursor.itersize = AUDIT_FETCH_ROWS
                cursor.execute(f"SELECT {AUDIT} FROM audit_records ORDER BY seq")  # noqa: S608
                for row in cursor:
                    yield audit_from_row(row)
        except psycopg.Error as exc:
            raise translate(exc) from exc


class PostgresTransaction(PostgresReader):
    """The writes of one READ COMMITTED transaction; row locks first, the chain lock last."""

    lock_rows = " FOR UPDATE"
    expired_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self._chain_locked = False
        self._nodes_locked: set[int] = set()
        self._held_back: AuditRecord | None = None

    def _execute(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        self.flush()
        return self._conn.execute(sql, params)

    def iter_audit(self) -> Iterator[AuditRecord]:
        """Yield every audit record in seq order, including one held back in this transaction."""
        self.flush()
        return super().iter_audit()

    @_translated
    def flush(self) -> None:
        """Write an audit record still held back for :meth:`write_audit_head` (before any other query)."""
        if self._held_back is not None:
            record, self._held_back = self._held_back, None
            self._conn.execute(_INSERT_AUDIT, audit_to_row(record))

    def find_keys(self, where: KeyFilter) -> list[KeyRecord]:
        """Return matching keys; a live-key lookup for one node first takes that node's lock."""
        if where.state is KeyState.LIVE and where.cluster is not None and where.node is not None:
            lock = node_lock_key(where.cluster, where.node)
            if lock not in self._nodes_locked:
                # A statement of its own: the lookup below then reads with a snapshot taken after
                # any concurrent AddNode for this node has committed.
                self._run("SELECT pg_advisory_xact_lock(%s, %s)", (NODE_LOCK_NAMESPACE, lock))
                self._nodes_locked.add(lock)
        return super().find_keys(where)

    @_translated
    def record_use(self, key_id: str, *, at: float, source: str) -> tuple[int, bool]:
        """Count one use and remember a new source address, in one statement (one round trip)."""
        row = self._execute(
            "WITH used AS (UPDATE keys SET uses = uses + 1, last_used_at = %(at)s "
            "WHERE key_id = %(key_id)s AND state = 'live' RETURNING uses), "
            "fresh AS (INSERT INTO key_sources (key_id, source, first_used_at) "
            "SELECT %(key_id)s, %(source)s, %(at)s FROM used "
            "ON CONFLICT (key_id, source) DO NOTHING RETURNING 1) "
            "SELECT (SELECT uses FROM used), EXISTS (SELECT 1 FROM fresh)",
            {"at": at, "key_id": key_id, "source": source},
        ).fetchone()
        if row is None or row[0] is None:
            raise Conflict("the key stopped being live during the request")
        return int(row[0]), bool(row[1])

    @_translated
    def lock_audit_head(self) -> ChainHead | None:
        """Lock the chain head row until commit or rollback, and return it as the last appender left it.

        ``FOR UPDATE`` waits for a concurrent appender and then returns the row it committed. An empty
        chain has no row to lock yet: first appenders queue on an advisory lock instead, then read
        (and lock) again, by then seeing the row the one before them wrote.
        """
        if self._chain_locked:
            return self.audit_head()
        rows = self._all(f"SELECT {HEAD} FROM audit_head WHERE id = 1 FOR UPDATE")  # noqa: S608
        if not rows:
            self._run("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, CHAIN_LOCK))
            rows = self._all(f"SELECT {HEAD} FROM audit_head WHERE id = 1 FOR UPDATE")  # noqa: S608
        self._chain_locked = True
        return head_from_row(rows[0]) if rows else None

    def append_audit(self, record: AuditRecord) -> None:
        """Store a sealed audit record; it is held back to go out with the head (one round trip for both)."""
        self.flush()
        self._held_back = record

    @_translated
    def write_audit_head(self, head: ChainHead) -> None:
        """Replace the signed chain head, writing a held-back record in the same statement."""
        params = {
            "head_seq": head.seq,
            "head_hash": head.record_hash,
            "head_signature": head.signature,
            "head_signer": head.signer,
        }
        if self._held_back is None:
            self._execute(_UPSERT_HEAD, params)
            return
        record, self._held_back = self._held_back, None
        row = dict(zip(AUDIT_COLUMNS, audit_to_row(record), strict=True))
        self._conn.execute(f"WITH appended AS ({_INSERT_AUDIT_NAMED}) {_UPSERT_HEAD}", {**row, **params})


def _configure(conn: psycopg.Connection[Any]) -> None:
    # A replica that hangs inside a transaction must not hold the chain lock for ever, and a request
    # stuck behind one gives up (503) rather than waiting with it.
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'")
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")


class PostgresStore:
    """A PostgreSQL database shared by any number of keysvc processes, through a bounded pool."""

    def __init__(
        self, database: str, *, migrations: tuple[schema.Migration, ...] = schema.migrations(schema.POSTGRES)
    ) -> None:
        url, self.pool_settings = split_dsn(database)
        self.description = describe(database)
        try:
            conninfo_to_dict(url)
        except psycopg.Error:
            # libpq's parse errors quote the URL or its password; the pool would log them on every
            # retry. Refuse it here, before any pool exists, and without chaining that text.
            raise ConfigError(
                f"state.database is not a URL libpq accepts ({self.description}): check its syntax, "
                "percent-encoding and query parameters"
            ) from None
        self._migrations = migrations
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "keysvc"}
        if self.pool_settings.connect_timeout:
            kwargs["connect_timeout"] = self.pool_settings.connect_timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=self.pool_settings.min_size,
            max_size=self.pool_settings.max_size,
            timeout=self.pool_settings.timeout,
            configure=_configure,
            reconnect_timeout=RECONNECT_SECONDS,
            name="keysvc",
            open=False,
        )
        # Opening does not wait for the database: the first unit of work does, up to pool_timeout.
        self._pool.open(wait=False)

    def _begin(self, begin: str, timeout: float) -> psycopg.Connection[Any]:
        """Check out a connection and open a transaction on it.

        A pooled connection may have died while idle (the database restarted). Nothing has happened
        on it yet, so BEGIN is retried on another one, at most once per pooled connection plus one:
        the first request after an outage does not fail, and no round trip is spent checking
        connections that are fine.
        """
        deadline = time.monotonic() + timeout
        for _ in range(self.pool_settings.max_size + 1):
            try:
                conn = self._pool.getconn(max(deadline - time.monotonic(), 0.001))
            except psycopg.Error as exc:
                raise translate(exc) from exc
            try:
                conn.execute(begin)
            except psycopg.OperationalError as exc:
                self._pool.putconn(conn)  # the pool discards a broken connection
                if not conn.closed:
                    raise translate(exc) from exc
                continue
            except BaseException:
                self._pool.putconn(conn)
                raise
            return conn
        raise StoreUnavailable("postgresql: every pooled connection was broken")

    @contextlib.contextmanager
    def _unit(self, begin: str, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        conn = self._begin(begin, self.pool_settings.timeout if timeout is None else timeout)
        try:
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            if conn.info.transaction_status == TransactionStatus.INERROR:
                # COMMIT of an aborted transaction silently rolls back: say so instead.
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise StoreError("postgresql: the transaction was aborted by an earlier error")
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise translate(exc) from exc
        finally:
            self._pool.putconn(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """A READ COMMITTED write transaction: commits on normal exit, rolls back on error."""
        with self._unit("BEGIN ISOLATION LEVEL READ COMMITTED") as conn:
            tx = PostgresTransaction(conn)
            yield tx
            tx.flush()

    @contextlib.contextmanager
    def read(self) -> Iterator[PostgresReader]:
        """A consistent read-only snapshot (REPEATABLE READ, READ ONLY)."""
        with self._unit("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as conn:
            yield PostgresReader(conn)

    def schema_version(self) -> int:
        """Return the highest applied migration, 0 for a fresh database."""
        with self._unit("BEGIN ISOLATION LEVEL READ COMMITTED") as conn:
            return self._version(conn)

    @staticmethod
    @_translated
    def _version(conn: psycopg.Connection[Any]) -> int:
        exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if exists is None or not exists[0]:
            return 0
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0) if row is not None else 0

    def migrate(self) -> int:
        """Apply every migration newer than the database in one transaction, under an advisory lock.

        Replicas that start together queue on the lock; the first applies the migrations, the
        others then find the schema current and apply nothing.
        """
        with self._unit("BEGIN ISOLATION LEVEL READ COMMITTED") as conn:
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, MIGRATION_LOCK))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                for migration in pending_migrations(self._migrations, self._version(conn)):
                    for statement in migration.statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
            except psycopg.OperationalError as exc:
                raise translate(exc) from exc
            except psycopg.Error as exc:
                raise MigrationError(f"migration failed: {translate(exc)}") from exc
        return self.schema_version()

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the schema can be read within a couple of seconds."""
        try:
            with self._unit("BEGIN READ ONLY", min(self.pool_settings.timeout, PING_TIMEOUT_SECONDS)) as conn:
                conn.execute("SELECT 1 FROM schema_version LIMIT 1").fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(str(translate(exc))) from exc
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def pool_stats(self) -> dict[str, int]:
        """psycopg_pool's counters (``pool_size``, ``pool_available``, ``requests_waiting``, ...)."""
        return self._pool.get_stats()

    def close(self) -> None:
        """Close the pool and every connection in it."""
        self._pool.close(timeout=5.0)
