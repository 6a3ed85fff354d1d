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
from typing import Any

from keysvc.errors import ConfigError, StateMissing
from keysvc.service.ports import Store
from keysvc.store.postgres_url import describe

__all__ = ["open_store"]

NOT_CREATED = "nothing was created: only `keysvc serve`, `db migrate` and `keys issue` create state"


def open_store(database: str, *, create: bool = True) -> Store:
    """Open the store a database URL names and bring its schema up to date.

    With ``create=False`` a SQLite file that does not exist, or a database without keysvc's schema,
    is :class:`~keysvc.errors.StateMissing`: a read never creates state.
    """
    scheme = database.split("://", 1)[0]
    store: Any
    if scheme == "sqlite":
        sqlite = importlib.import_module("keysvc.store.sqlite")
        path = sqlite.path_from_url(database)
        if not create and not path.exists():
            raise StateMissing(f"no keysvc database at {path} ({NOT_CREATED})")
        store = sqlite.SqliteStore(path)
    elif scheme in {"postgresql", "postgres"}:
        try:
            postgres = importlib.import_module("keysvc.store.postgres")
        except ModuleNotFoundError as exc:
            raise ConfigError("this keysvc has no PostgreSQL store") from exc
        store = postgres.PostgresStore(database)
    else:
        raise ConfigError("state.database must start with sqlite:// or postgresql://")
    try:
        if not create:
            _check_schema(store, database)
        store.migrate()
    except BaseException:
        store.close()
        raise
    opened: Store = store
    return opened


def _check_schema(store: Any, database: str) -> None:
    """A SQL store's ``schema_version()`` is 0 when keysvc never migrated that database."""
    if store.schema_version() == 0:
        raise StateMissing(f"the database {describe(database)} holds no keysvc schema ({NOT_CREATED})")
