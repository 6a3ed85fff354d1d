"""State stores behind one small interface: SQLite (embedded default) and PostgreSQL (replicas).

Public: :func:`open_store`, :class:`Store`, :class:`Transaction`, :class:`Reader`, :class:`KeyFilter`,
:class:`AuditFilter`.
"""

from __future__ import annotations

import importlib

from keysvc.errors import ConfigError
from keysvc.store.interface import AuditFilter, KeyFilter, Reader, Store, Transaction
from keysvc.store.sqlite import SqliteStore, path_from_url

__all__ = ["AuditFilter", "KeyFilter", "Reader", "Store", "Transaction", "open_store"]


def open_store(database: str) -> Store:
    """Open the store a database URL names and bring its schema up to date."""
    scheme = database.split("://", 1)[0]
    store: Store
    if scheme == "sqlite":
        store = SqliteStore(path_from_url(database))
    elif scheme in {"postgresql", "postgres"}:
        try:
            postgres = importlib.import_module("keysvc.store.postgres")
        except ModuleNotFoundError as exc:
            raise ConfigError("this keysvc has no PostgreSQL store") from exc
        store = postgres.PostgresStore(database)
    else:
        raise ConfigError("state.database must start with sqlite:// or postgresql://")
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
