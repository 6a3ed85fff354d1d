"""How the operator commands print: aligned tables, JSON, UTC timestamps and short durations.

Nothing here ever sees a plaintext key: only ``keys issue`` prints one, itself, once.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from keysvc.core import auditchain, expiry, timefmt
from keysvc.core.models import AuditRecord, KeyRecord
from keysvc.errors import InvalidInput

_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def iso(ts: float | None) -> str:
    """Format epoch seconds as ISO 8601 UTC with a ``Z``; ``-`` for None."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float) -> str:
    """Format a duration compactly: ``59m59s``, ``1h0m``, ``7s``."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def parse_time(text: str, now: float) -> float:
    """Read a time: epoch seconds, ISO 8601 (UTC unless it says otherwise), or an age such as ``30m``."""
    value = text.strip()
    if match := _DURATION.fullmatch(value):
        return now - float(match["n"]) * _UNITS[match["unit"]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"cannot read time {text!r}: use epoch seconds, ISO 8601 or an age like 30m"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Render rows as left-aligned columns under upper-case headers."""
    body = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *body]
    ]
    return "\n".join(lines)


def emit(text: str) -> None:
    """Write a line to stdout."""
    sys.stdout.write(text + "\n")


def emit_json(data: Any) -> None:
    """Write ``data`` as indented, sorted JSON to stdout."""
    emit(json.dumps(data, indent=2, sort_keys=True))


def key_json(rec: KeyRecord, now: float) -> dict[str, Any]:
    """A key as JSON: every field but the hash."""
    return {
        "key_id": rec.key_id,
        "cluster": rec.cluster,
        "node": rec.node,
        "instance": rec.instance,
        "region": rec.region,
        "operation_id": rec.operation_id,
        "state": rec.state.value,
        "started_at": iso(rec.started_at),
        "issued_at": iso(rec.issued_at),
        "expires_at": iso(rec.expires_at),
        "ttl_left_seconds": (
            timefmt.whole_seconds(expiry.remaining(now, rec.expires_at)) if rec.state.value == "live" else 0
        ),
        "ended_at": iso(rec.ended_at) if rec.ended_at is not None else None,
        "end_reason": rec.end_reason,
        "uses": rec.uses,
        "last_used_at": iso(rec.last_used_at) if rec.last_used_at is not None else None,
        "exchanged_at": iso(rec.exchanged_at) if rec.exchanged_at is not None else None,
        "exchanges": rec.exchanges,
        "session": "held" if rec.session_hash is not None else ("ended" if rec.exchanged else "none"),
        "replays": rec.replays,
        "last_replay_at": iso(rec.last_replay_at) if rec.last_replay_at is not None else None,
    }


KEY_HEADERS = (
    "KEY ID",
    "CLUSTER",
    "NODE",
    "INSTANCE",
    "REGION",
    "STATE",
    "TTL LEFT",
    "EXPIRES",
    "USES",
    "LAST USED",
    "REPLAYS",
)


def audit_json(record: AuditRecord) -> dict[str, Any]:
    """An audit record as listings print it: the chain's fields, with ``at`` in RFC 3339 and ``at_unix``."""
    data = auditchain.record_to_json(record)
    return {**data, "at": timefmt.rfc3339(record.event.at), "at_unix": record.event.at}


def key_row(rec: KeyRecord, now: float) -> list[str]:
    """A key as a table row under :data:`KEY_HEADERS`."""
    ttl = duration(expiry.remaining(now, rec.expires_at)) if rec.state.value == "live" else "-"
    return [
        rec.key_id,
        rec.cluster,
        rec.node,
        rec.instance or "-",
        rec.region,
        rec.state.value,
        ttl,
        iso(rec.expires_at),
        str(rec.uses),
        iso(rec.last_used_at),
        str(rec.replays),
    ]
