"""State stores, the adapters behind the service's :class:`~keysvc.service.ports.Store` port.

- :mod:`keysvc.store.sqlite`: the embedded default, one process, zero setup;
- :mod:`keysvc.store.postgres`: several replicas behind a load balancer;
- :mod:`keysvc.store.memory`: in process, for the service's own unit tests.

The SQL stores share their schema (:mod:`keysvc.store.schema`) and their queries and writes
(:mod:`keysvc.store.sql`). Adapters are imported only when a URL asks for them, so importing this
package loads no database driver.
"""

from __future__ import annotations

import importlib

from keysvc.errors import ConfigError
from keysvc.service.ports import Store

__all__ = ["open_store"]


def open_store(database: str) -> Store:
    """Open the store a database URL names and bring its schema up to date."""
    scheme = database.split("://", 1)[0]
    store: Store
    if scheme == "sqlite":
        sqlite = importlib.import_module("keysvc.store.sqlite")
        store = sqlite.SqliteStore(sqlite.path_from_url(database))
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
