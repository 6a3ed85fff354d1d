"""``keysvc db migrate``: bring the database schema up to date, and say which version it is at.

``keysvc serve`` migrates at start too; running this first (a deploy step, an init container) keeps
the schema change out of the replicas' start. Safe to run from several places at once: SQLite takes
its write lock, PostgreSQL an advisory lock, and each migration is applied exactly once.
"""

from __future__ import annotations

import argparse
from typing import Any

from keysvc.commands.tables import emit, emit_json
from keysvc.runtime import load_settings
from keysvc.store import open_store
from keysvc.store.postgres_url import describe


def register(subparsers: Any) -> None:
    """Add the ``db`` command group."""
    db = subparsers.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="apply pending schema migrations",
        description="Apply every pending migration to state.database (KEYSVC_DATABASE), then print the "
        "schema version. Idempotent, and safe while replicas are starting.",
    )
    migrate.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")
    migrate.set_defaults(handler=run_migrate)


def describe_database(database: str) -> str:
    """Name the database without any password or connection parameters."""
    if database.split("://", 1)[0] in {"postgresql", "postgres"}:
        return describe(database)
    return database


def run_migrate(args: argparse.Namespace) -> int:
    """Open the store (which migrates it) and report the schema version now in place."""
    settings = load_settings(args.config, args.state_dir)
    store = open_store(settings.state.database)
    try:
        version = store.migrate()
    finally:
        store.close()
    where = describe_database(settings.state.database)
    if args.output == "json":
        emit_json({"database": where, "schema_version": version})
    else:
        emit(f"{where}: schema at version {version}")
    return 0
