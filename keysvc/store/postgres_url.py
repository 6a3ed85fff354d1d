"""PostgreSQL URLs as keysvc takes them: libpq's URL plus keysvc's own ``pool_*`` query parameters.

Pure: no I/O. ``pool_*`` parameters are removed before libpq sees the URL (libpq refuses unknown
ones); :func:`describe` names a database without its password, for logs and command output::

    postgresql://keysvc:pw@db.internal:5432/keysvc?pool_max_size=20&pool_timeout=5&sslmode=require
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from keysvc.errors import ConfigError

POOL_PARAMETERS = ("pool_min_size", "pool_max_size", "pool_timeout")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Connection pool bounds, read from the DSN's ``pool_*`` query parameters."""

    min_size: int = 1
    max_size: int = 10
    timeout: float = 5.0
    connect_timeout: int = 5


def split_dsn(database: str) -> tuple[str, PoolSettings]:
    """Separate keysvc's ``pool_*`` parameters from a PostgreSQL URL; return the libpq URL and them."""
    parts = _split(database)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ConfigError("a PostgreSQL database URL starts with postgresql://")
    kept: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in POOL_PARAMETERS:
            values[name] = value
        else:
            kept.append((name, value))
    defaults = PoolSettings()
    try:
        min_size = int(values.get("pool_min_size", defaults.min_size))
        max_size = int(values.get("pool_max_size", defaults.max_size))
        timeout = float(values.get("pool_timeout", defaults.timeout))
    except ValueError as exc:
        raise ConfigError("pool_min_size and pool_max_size must be integers, pool_timeout seconds") from exc
    if not 1 <= min_size <= max_size <= 1000:
        raise ConfigError("the pool needs 1 <= pool_min_size <= pool_max_size <= 1000")
    if not 0 < timeout <= 600:
        raise ConfigError("pool_timeout must be between 0 and 600 seconds")
    connect_timeout = defaults.connect_timeout
    if any(name == "connect_timeout" for name, _ in kept):
        connect_timeout = 0  # the DSN's own value wins
    url = urlunsplit(parts._replace(query=urlencode(kept)))
    return url, PoolSettings(min_size, max_size, timeout, connect_timeout)


def _split(database: str) -> SplitResult:
    """Split a database URL; a malformed one is a :class:`ConfigError` that does not echo it."""
    try:
        parts = urlsplit(database)
        _ = parts.port  # parsed lazily; a non-numeric or out-of-range port raises here
    except ValueError:
        # The URL is not echoed, nor chained: it may carry the password.
        raise ConfigError("state.database is not a well-formed PostgreSQL URL") from None
    return parts


def describe(database: str) -> str:
    """Return a PostgreSQL URL without its password or parameters, safe for logs and messages."""
    try:
        parts = _split(database)
    except ConfigError:
        return "<malformed PostgreSQL URL>"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
