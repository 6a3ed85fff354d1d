"""The schema, written once for both SQL stores, and the versioned migrations that build it.

Versions are append-only: a released migration is never edited, a new one is added. The SQL is
portable (``ON CONFLICT``, partial indexes and ``CHECK`` constraints work in both dialects); only
three column types differ, and :class:`Dialect` names them:

=========  ==========  ================  ====================================================
type       SQLite      PostgreSQL        why
=========  ==========  ================  ====================================================
``time``   REAL        DOUBLE PRECISION  PostgreSQL's REAL is 4 bytes and would round epochs
``bytes``  BLOB        BYTEA             hashes and signatures
``count``  INTEGER     BIGINT            the audit sequence and use counters
=========  ==========  ================  ====================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one SQL database calls the three column types that differ."""

    name: str
    time: str
    bytes: str
    count: str


SQLITE = Dialect(name="sqlite", time="REAL", bytes="BLOB", count="INTEGER")
POSTGRES = Dialect(name="postgresql", time="DOUBLE PRECISION", bytes="BYTEA", count="BIGINT")


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change: statements run in order inside one transaction."""

    version: int
    name: str
    statements: Sequence[str]


_V1 = (
    """
    CREATE TABLE keys (
        key_id       TEXT PRIMARY KEY,
        cluster      TEXT NOT NULL,
        node         TEXT NOT NULL,
        instance     TEXT NOT NULL,
        region       TEXT NOT NULL,
        operation_id TEXT NOT NULL,
        started_at   {time} NOT NULL,
        issued_at    {time} NOT NULL,
        expires_at   {time} NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('live', 'revoked', 'expired')),
        key_hash     {bytes},
        ended_at     {time},
        end_reason   TEXT,
        uses         {count} NOT NULL DEFAULT 0,
        last_used_at {time},
        CHECK ((state = 'live') = (key_hash IS NOT NULL))
    )
    """,
    # One live key per node, even with several writers: the schema itself refuses a second.
    "CREATE UNIQUE INDEX keys_one_live_per_node ON keys (cluster, node) WHERE state = 'live'",
    "CREATE INDEX keys_by_operation ON keys (operation_id)",
    "CREATE INDEX keys_by_instance ON keys (instance)",
    "CREATE INDEX keys_live_by_expiry ON keys (expires_at) WHERE state = 'live'",
    """
    CREATE TABLE key_sources (
        key_id        TEXT NOT NULL REFERENCES keys (key_id),
        source        TEXT NOT NULL,
        first_used_at {time} NOT NULL,
        PRIMARY KEY (key_id, source)
    )
    """,
    """
    CREATE TABLE audit_records (
        seq         {count} PRIMARY KEY,
        at          {time} NOT NULL,
        event       TEXT NOT NULL,
        key_id      TEXT,
        cluster     TEXT,
        node        TEXT,
        instance    TEXT,
        region      TEXT,
        actor       TEXT,
        source      TEXT,
        reason      TEXT,
        detail      TEXT NOT NULL,
        prev_hash   {bytes} NOT NULL,
        record_hash {bytes} NOT NULL,
        signature   {bytes} NOT NULL,
        signer      TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_by_key ON audit_records (key_id)",
    "CREATE INDEX audit_by_time ON audit_records (at)",
    """
    CREATE TABLE audit_head (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        seq         {count} NOT NULL,
        record_hash {bytes} NOT NULL,
        signature   {bytes} NOT NULL,
        signer      TEXT NOT NULL
    )
    """,
)

_V2 = (
    # The exchange, once: the first exchange's nonce, the current session, and replays seen.
    "ALTER TABLE keys ADD COLUMN nonce_hash {bytes}",
    "ALTER TABLE keys ADD COLUMN session_hash {bytes}",
    "ALTER TABLE keys ADD COLUMN exchanged_at {time}",
    "ALTER TABLE keys ADD COLUMN exchanges {count} NOT NULL DEFAULT 0",
    "ALTER TABLE keys ADD COLUMN replays {count} NOT NULL DEFAULT 0",
    "ALTER TABLE keys ADD COLUMN last_replay_at {time}",
    "CREATE INDEX keys_replayed ON keys (replays) WHERE replays > 0",
)

_VERSIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "keys, first-use sources, audit chain and its signed head", _V1),
    (2, "key exchange: nonce, session and replay count per key", _V2),
)


def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """Return every migration, in version order, with ``dialect``'s column types filled in."""
    types = {"time": dialect.time, "bytes": dialect.bytes, "count": dialect.count}
    return tuple(
        Migration(version=version, name=name, statements=tuple(s.format(**types) for s in statements))
        for version, name, statements in _VERSIONS
    )
