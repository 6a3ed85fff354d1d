"""The filtered SELECTs both SQL stores run, written once for either placeholder style.

SQLite's driver takes ``?`` and psycopg takes ``%s``; everything else about these queries is the same
SQL. Column names come from constants, never from callers; values always travel as parameters.
"""

from __future__ import annotations

from typing import Any

from keysvc.store.interface import AuditFilter, KeyFilter
from keysvc.store.rows import AUDIT_COLUMNS, KEY_COLUMNS

_KEYS = ", ".join(KEY_COLUMNS)
_AUDIT = ", ".join(AUDIT_COLUMNS)


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
        ],
        mark,
    )
    return f"SELECT {_KEYS} FROM keys{clause} ORDER BY issued_at, key_id", params  # noqa: S608 - constants


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
    sql = f"SELECT {_AUDIT} FROM audit_records{clause} ORDER BY seq DESC"  # noqa: S608 - constants
    if where.limit is not None:
        sql += f" LIMIT {mark}"
        params.append(where.limit)
    return sql, params
