"""The agent's endpoint: exchange an ingest key and chunk names for signed PUT URLs."""

from __future__ import annotations

from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPBearer

from keysvc.checks import Reason
from keysvc.errors import ConfigError, InvalidInput, InvalidObjectName, KeyEnded
from keysvc.grants import plan_grants, upload_headers
from keysvc.http.auth import source_of
from keysvc.http.context import Context
from keysvc.http.responses import documented
from keysvc.http.schemas import Grant, GrantRequest, GrantResponse
from keysvc.models import Scope

GRANT_PATH = "/v1/ingest/grants"

bearer = HTTPBearer(auto_error=False, description="the node's ingest key (nlk1_...)")


def router(ctx: Context) -> APIRouter:
    """Build the grant route."""
    api = APIRouter(tags=["agent"], dependencies=[Security(bearer)])
    server = ctx.settings.server

    @api.post(
        GRANT_PATH,
        response_model=GrantResponse,
        responses=documented(400, 401, 413, 415, 422, 429, 503),
        summary="Upload grant: one signed PUT URL per proposed chunk name",
    )
    def grant(body: GrantRequest, request: Request) -> GrantResponse:
        if len(body.objects) > server.max_objects_per_grant:
            raise InvalidInput(f"at most {server.max_objects_per_grant} objects per request")
        wanted = None  # no claims: the key's own record is the scope
        if body.cluster is not None and body.node is not None and body.region is not None:
            wanted = Scope(cluster=body.cluster, node=body.node, region=body.region)
        record = ctx.guard.ingest(request, wanted)
        region = ctx.settings.regions.get(record.region)
        if region is None:
            raise ConfigError(f"region {record.region!r} of key {record.key_id} is no longer configured")
        now = ctx.clock.now()
        try:
            plans = plan_grants(
                [item.name for item in body.objects],
                prefix=region.prefix,
                cluster=record.cluster,
                node=record.node,
                now=now,
                key_expires_at=record.expires_at,
                url_ttl_seconds=server.url_ttl_seconds,
            )
        except InvalidObjectName as exc:
            ctx.metrics.refusals.inc(Reason.BAD_OBJECT_NAME)
            ctx.service.record_refusal(
                reason=Reason.BAD_OBJECT_NAME,
                source=source_of(request),
                key_id=record.key_id,
                detail={"error": str(exc), "objects": len(body.objects)},
            )
            raise
        if plans and plans[0].expires_in < 1:
            ctx.metrics.refusals.inc(Reason.EXPIRED)
            ctx.service.record_refusal(
                reason=Reason.EXPIRED,
                source=source_of(request),
                key_id=record.key_id,
                detail={"why": "less than one second of key lifetime left to sign a URL"},
            )
            raise KeyEnded(Reason.EXPIRED)  # the key was just authenticated
        headers = upload_headers(server.max_chunk_bytes)
        grants = [
            Grant(
                name=plan.name,
                object=plan.object,
                url=ctx.signer.sign_put(
                    bucket=region.bucket,
                    object_name=plan.object,
                    headers=headers,
                    signed_at=plan.signed_at,
                    expires_in=plan.expires_in,
                ),
                method="PUT",
                headers=headers,
                expires_at=float(plan.expires_at),
            )
            for plan in plans
        ]
        ctx.metrics.grants.inc(amount=len(grants))
        return GrantResponse(
            key_id=record.key_id,
            cluster=record.cluster,
            node=record.node,
            region=record.region,
            server_time=now,
            key_expires_at=record.expires_at,
            bucket=region.bucket,
            grants=grants,
        )

    return api
