"""Operator endpoints: read keys and the audit log, verify the chain, revoke. Admin tokens only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Security
from fastapi.security import HTTPBearer

from keysvc.core.models import AuditRecord, EventType, KeyRecord, KeyState
from keysvc.core.timefmt import rfc3339, rfc3339_or_none
from keysvc.errors import AuditIntegrityError
from keysvc.files.credentials import Credential
from keysvc.http.auth import requires
from keysvc.http.context import Context
from keysvc.http.responses import AUTHED, documented
from keysvc.http.schemas import (
    AuditList,
    AuditOut,
    KeyList,
    KeyOut,
    RevocationRequest,
    RevokedResponse,
    RevokeKeyRequest,
    VerifyOut,
)

bearer = HTTPBearer(auto_error=False, description="admin token (nlt1_...)")
READ, REVOKE = "admin:read", "admin:revoke"
Text = Annotated[str | None, Query(max_length=253)]


def key_out(rec: KeyRecord) -> KeyOut:
    """Return the public view of a key record (no hash)."""
    return KeyOut(
        key_id=rec.key_id,
        cluster=rec.cluster,
        node=rec.node,
        instance=rec.instance,
        region=rec.region,
        operation_id=rec.operation_id,
        started_at=rfc3339(rec.started_at),
        issued_at=rfc3339(rec.issued_at),
        expires_at=rfc3339(rec.expires_at),
        state=rec.state.value,
        ended_at=rfc3339_or_none(rec.ended_at),
        end_reason=rec.end_reason,
        uses=rec.uses,
        last_used_at=rfc3339_or_none(rec.last_used_at),
    )


def audit_out(record: AuditRecord) -> AuditOut:
    """Return an audit record as JSON-friendly fields."""
    event = record.event
    return AuditOut(
        seq=record.seq,
        at=rfc3339(event.at),
        at_unix=event.at,
        event=event.event.value,
        key_id=event.key_id,
        cluster=event.cluster,
        node=event.node,
        instance=event.instance,
        region=event.region,
        actor=event.actor,
        source=event.source,
        reason=event.reason,
        detail=dict(event.detail),
        prev_hash=record.prev_hash.hex(),
        record_hash=record.record_hash.hex(),
        signer=record.signer,
    )


def router(ctx: Context) -> APIRouter:
    """Build the admin routes that read and revoke keys."""
    api = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Security(bearer)])
    reads = documented(*AUTHED)
    reader = Depends(requires(ctx.guard, READ))
    revoker = Depends(requires(ctx.guard, REVOKE))

    @api.get("/keys", response_model=KeyList, responses=reads, summary="List keys")
    def list_keys(
        cluster: Text = None, node: Text = None, state: KeyState | None = None, _caller: Credential = reader
    ) -> KeyList:
        return KeyList(keys=[key_out(r) for r in ctx.keys.list_keys(cluster=cluster, node=node, state=state)])

    @api.get(
        "/keys/{key_id}", response_model=KeyOut, responses=documented(*AUTHED, 404), summary="Show a key"
    )
    def show_key(key_id: str, _caller: Credential = reader) -> KeyOut:
        return key_out(ctx.keys.get_key(key_id))

    @api.post(
        "/keys/{key_id}/revoke",
        response_model=RevokedResponse,
        responses=documented(*AUTHED, 404),
        summary="Revoke one key",
    )
    def revoke_key(key_id: str, body: RevokeKeyRequest, caller: Credential = revoker) -> RevokedResponse:
        revoked = ctx.keys.revoke(
            reason=body.reason, actor=f"credential:{caller.name}", key_id=key_id, channel="admin"
        )
        return RevokedResponse(revoked=revoked)

    @api.post(
        "/revocations",
        response_model=RevokedResponse,
        responses=documented(*AUTHED, 404),
        summary="Revoke by key id, cluster, node of a cluster, or instance",
    )
    def revocations(body: RevocationRequest, caller: Credential = revoker) -> RevokedResponse:
        actor = f"credential:{caller.name}"
        if body.node is not None and body.cluster is not None:
            revoked = revoke_node(
                ctx, reason=body.reason, actor=actor, cluster=body.cluster, node=body.node, channel="admin"
            )
        else:
            revoked = ctx.keys.revoke(
                reason=body.reason,
                actor=actor,
                key_id=body.key_id,
                cluster=body.cluster,
                instance=body.instance,
                channel="admin",
            )
        return RevokedResponse(revoked=revoked)

    return api


def audit_router(ctx: Context) -> APIRouter:
    """Build the admin routes that read and verify the audit chain."""
    api = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Security(bearer)])
    reads = documented(*AUTHED)
    reader = Depends(requires(ctx.guard, READ))

    @api.get("/audit", response_model=AuditList, responses=reads, summary="Read the audit log")
    def audit(
        _caller: Credential = reader,
        *,
        since: float | None = None,
        until: float | None = None,
        cluster: Text = None,
        node: Text = None,
        event: EventType | None = None,
        key_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> AuditList:
        records = ctx.keys.audit.records(
            since=since, until=until, cluster=cluster, node=node, event=event, key_id=key_id, limit=limit
        )
        return AuditList(records=[audit_out(r) for r in records])

    @api.get("/audit/verify", response_model=VerifyOut, responses=reads, summary="Verify the audit chain")
    def verify(_caller: Credential = reader) -> VerifyOut:
        try:
            report = ctx.keys.audit.verify()
        except AuditIntegrityError as exc:
            ctx.metrics.audit_chain_ok.set(0)
            return VerifyOut(ok=False, detail={"problem": str(exc)})
        ctx.metrics.audit_chain_ok.set(1)
        return VerifyOut(
            ok=True,
            detail={"records": report.records, "head_seq": report.head_seq, "signers": list(report.signers)},
        )

    return api


def revoke_node(
    ctx: Context, *, reason: str, actor: str, cluster: str, node: str, channel: str = "admin"
) -> list[str]:
    """Revoke every live key of one node of one cluster, in one transaction."""
    return ctx.keys.revoke(reason=reason, actor=actor, cluster=cluster, node=node, channel=channel)
