"""Column lists and row conversions shared by the SQL stores (SQLite, PostgreSQL).

A row is a plain sequence of column values in the order of the column list.

A key's ``instance`` column is NOT NULL: a key whose node has no EC2 instance bound yet stores
:data:`UNBOUND_INSTANCE` (the empty string), which no valid instance id can be. This module is the one
place that maps it to and from ``None`` in :class:`~keysvc.core.models.KeyRecord`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from keysvc.core.auditchain import ChainHead
from keysvc.core.models import AuditEvent, AuditRecord, EventType, KeyRecord, KeyState
from keysvc.errors import AuditIntegrityError

KEY_COLUMNS = (
    "key_id",
    "cluster",
    "node",
    "instance",
    "region",
    "operation_id",
    "started_at",
    "issued_at",
    "expires_at",
    "state",
    "key_hash",
    "ended_at",
    "end_reason",
    "uses",
    "last_used_at",
    "nonce_hash",
    "session_hash",
    "exchanged_at",
    "exchanges",
    "replays",
    "last_replay_at",
)
AUDIT_COLUMNS = (
    "seq",
    "at",
    "event",
    "key_id",
    "cluster",
    "node",
    "instance",
    "region",
    "actor",
    "source",
    "reason",
    "detail",
    "prev_hash",
    "record_hash",
    "signature",
    "signer",
)
HEAD_COLUMNS = ("seq", "record_hash", "signature", "signer")
UNBOUND_INSTANCE = ""
"""The stored ``instance`` of a key whose node's EC2 instance is not bound yet."""


def instance_to_column(instance: str | None) -> str:
    """Return the stored form of a key's instance: :data:`UNBOUND_INSTANCE` for None."""
    return UNBOUND_INSTANCE if instance is None else instance


def instance_from_column(value: str) -> str | None:
    """Return a key's instance from its stored form: None for :data:`UNBOUND_INSTANCE`."""
    return None if value == UNBOUND_INSTANCE else value


def key_to_row(record: KeyRecord) -> tuple[Any, ...]:
    """Flatten a key record in :data:`KEY_COLUMNS` order."""
    return (
        record.key_id,
        record.cluster,
        record.node,
        instance_to_column(record.instance),
        record.region,
        record.operation_id,
        record.started_at,
        record.issued_at,
        record.expires_at,
        record.state.value,
        record.key_hash,
        record.ended_at,
        record.end_reason,
        record.uses,
        record.last_used_at,
        record.nonce_hash,
        record.session_hash,
        record.exchanged_at,
        record.exchanges,
        record.replays,
        record.last_replay_at,
    )


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    """Rebuild a key record from a row in :data:`KEY_COLUMNS` order."""
    return KeyRecord(
        key_id=row[0],
        cluster=row[1],
        node=row[2],
        instance=instance_from_column(row[3]),
        region=row[4],
        operation_id=row[5],
        started_at=float(row[6]),
        issued_at=float(row[7]),
        expires_at=float(row[8]),
        state=KeyState(row[9]),
        key_hash=bytes(row[10]) if row[10] is not None else None,
        ended_at=float(row[11]) if row[11] is not None else None,
        end_reason=row[12],
        uses=int(row[13]),
        last_used_at=float(row[14]) if row[14] is not None else None,
        nonce_hash=bytes(row[15]) if row[15] is not None else None,
        session_hash=bytes(row[16]) if row[16] is not None else None,
        exchanged_at=float(row[17]) if row[17] is not None else None,
        exchanges=int(row[18]),
        replays=int(row[19]),
        last_replay_at=float(row[20]) if row[20] is not None else None,
    )


def audit_to_row(record: AuditRecord) -> tuple[Any, ...]:
    """Flatten an audit record in :data:`AUDIT_COLUMNS` order; ``detail`` becomes sorted-key JSON."""
    event = record.event
    return (
        record.seq,
        event.at,
        event.event.value,
        event.key_id,
        event.cluster,
        event.node,
        event.instance,
        event.region,
        event.actor,
        event.source,
        event.reason,
        json.dumps(event.detail, sort_keys=True),
        record.prev_hash,
        record.record_hash,
        record.signature,
        record.signer,
    )


def audit_from_row(row: Sequence[Any]) -> AuditRecord:
    """Rebuild an audit record from a row in :data:`AUDIT_COLUMNS` order.

    A row that cannot even be parsed has been edited: :class:`AuditIntegrityError` names it.
    """
    try:
        detail = dict(json.loads(row[11]))
        event = AuditEvent(
            at=float(row[1]),
            event=EventType(row[2]),
            key_id=row[3],
            cluster=row[4],
            node=row[5],
            instance=row[6],
            region=row[7],
            actor=row[8],
            source=row[9],
            reason=row[10],
            detail=detail,
        )
        return AuditRecord(
            seq=int(row[0]),
            event=event,
            prev_hash=bytes(row[12]),
            record_hash=bytes(row[13]),
            signature=bytes(row[14]),
            signer=str(row[15]),
        )
    except (TypeError, ValueError) as exc:
        raise AuditIntegrityError(f"record {row[0]}: edited: the stored row cannot be parsed") from exc


def head_from_row(row: Sequence[Any]) -> ChainHead:
    """Rebuild the chain head from a row in :data:`HEAD_COLUMNS` order."""
    return ChainHead(seq=int(row[0]), record_hash=bytes(row[1]), signature=bytes(row[2]), signer=row[3])
