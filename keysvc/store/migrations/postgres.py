"""PostgreSQL schema migrations, kept in step with :mod:`keysvc.store.migrations.sqlite`.

Same versions, same names, same tables, columns, constraints and indexes; only the column types
differ: ``DOUBLE PRECISION`` for times (PostgreSQL's ``REAL`` is 4 bytes and would round epoch
seconds), ``BYTEA`` for hashes and signatures, ``BIGINT`` for the audit sequence.
"""

from __future__ import annotations

from keysvc.store.interface import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="keys, first-use sources, audit chain and its signed head",
        statements=(
            """
            CREATE TABLE keys (
                key_id       TEXT PRIMARY KEY,
                cluster      TEXT NOT NULL,
                node         TEXT NOT NULL,
                instance     TEXT NOT NULL,
                region       TEXT NOT NULL,
                operation_id TEXT NOT NULL,
                started_at   DOUBLE PRECISION NOT NULL,
                issued_at    DOUBLE PRECISION NOT NULL,
                expires_at   DOUBLE PRECISION NOT NULL,
                state        TEXT NOT NULL CHECK (state IN ('live', 'revoked', 'expired')),
                key_hash     BYTEA,
                ended_at     DOUBLE PRECISION,
                end_reason   TEXT,
                uses         BIGINT NOT NULL DEFAULT 0,
                last_used_at DOUBLE PRECISION,
                CHECK ((state = 'live') = (key_hash IS NOT NULL))
            )
            """,
            # One live key per node, even with several replicas: the schema itself refuses a second.
            "CREATE UNIQUE INDEX keys_one_live_per_node ON keys (cluster, node) WHERE state = 'live'",
            "CREATE INDEX keys_by_operation ON keys (operation_id)",
            "CREATE INDEX keys_by_instance ON keys (instance)",
            "CREATE INDEX keys_live_by_expiry ON keys (expires_at) WHERE state = 'live'",
            """
            CREATE TABLE key_sources (
                key_id        TEXT NOT NULL REFERENCES keys (key_id),
                source        TEXT NOT NULL,
                first_used_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (key_id, source)
            )
            """,
            """
            CREATE TABLE audit_records (
                seq         BIGINT PRIMARY KEY,
                at          DOUBLE PRECISION NOT NULL,
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
                prev_hash   BYTEA NOT NULL,
                record_hash BYTEA NOT NULL,
                signature   BYTEA NOT NULL,
                signer      TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_by_key ON audit_records (key_id)",
            "CREATE INDEX audit_by_time ON audit_records (at)",
            """
            CREATE TABLE audit_head (
                id          INTEGER PRIMARY KEY CHECK (id = 1),
                seq         BIGINT NOT NULL,
                record_hash BYTEA NOT NULL,
                signature   BYTEA NOT NULL,
                signer      TEXT NOT NULL
            )
            """,
        ),
    ),
)
