"""The agent's endpoint: exchange an ingest key and chunk names for signed PUT URLs.

The route parses and formats; :class:`~keysvc.service.ingest.IngestService` decides.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPBearer

from keysvc.core.models import Scope
from keysvc.errors import InvalidObjectName, Refused
from keysvc.http.auth import source_of
from keysvc.http.context import Context
from keysvc.http.responses import documented
from keysvc.http.schemas import ExchangeRequest, ExchangeResponse, Grant, GrantRequest, GrantResponse
from keysvc.wire.results import Reason

GRANT_PATH = "/v1/ingest/grants"
EXCHANGE_PATH = "/v1/ingest/exchange"
INGEST_PATHS = (GRANT_PATH, EXCHANGE_PATH)

bearer = HTTPBearer(
    auto_error=False, description="the node's session (nls1_...), or its ingest key (nlk1_...) to exchange"
)


def _add_exchange(api: APIRouter, ctx: Context) -> None:
    @api.post(
        EXCHANGE_PATH,
        response_model=ExchangeResponse,
        responses=documented(400, 401, 413, 415, 422, 429, 503),
        summary="Exchange, once: the user-data key and the agent's nonce for a session credential",
    )
    def exchange(body: ExchangeRequest, request: Request) -> ExchangeResponse:
        identity = None
        if body.identity_document is not None and body.identity_signature is not None:
            identity = (body.identity_document.encode("utf-8"), body.identity_signature)
        answer = ctx.guard.exchange(request, body.nonce, identity)
        return ExchangeResponse(
            key_id=answer.record.key_id,
            session=answer.session,
            superseded=answer.superseded,
            server_time=answer.server_time,
            key_expires_at=answer.record.expires_at,
        )


def router(ctx: Context) -> APIRouter:
    """Build the exchange and grant routes."""
    api = APIRouter(tags=["agent"], dependencies=[Security(bearer)])
    _add_exchange(api, ctx)

    @api.post(
        GRANT_PATH,
        response_model=GrantResponse,
        responses=documented(400, 401, 413, 415, 422, 429, 503),
        summary="Upload grant: one signed PUT URL per proposed chunk name",
    )
    def grant(body: GrantRequest, request: Request) -> GrantResponse:
        ctx.ingest.check_batch(len(body.objects))
        wanted = None  # no claims: the key's own record is the scope
        if body.cluster is not None and body.node is not None and body.region is not None:
            wanted = Scope(cluster=body.cluster, node=body.node, region=body.region)
        record = ctx.guard.ingest(request, wanted)
        try:
            answer = ctx.ingest.grant(record, [item.name for item in body.objects], source=source_of(request))
        except InvalidObjectName:
            ctx.metrics.refusals.inc(Reason.BAD_OBJECT_NAME)
            raise
        except Refused as exc:
            ctx.metrics.refusals.inc(exc.reason)
            raise
        ctx.metrics.grants.inc(amount=len(answer.uploads))
        return GrantResponse(
            key_id=record.key_id,
            cluster=record.cluster,
            node=record.node,
            region=record.region,
            server_time=answer.server_time,
            key_expires_at=record.expires_at,
            bucket=answer.bucket,
            grants=[
                Grant(
                    name=upload.name,
                    object=upload.object,
                    url=upload.url,
                    method="PUT",
                    headers=dict(upload.headers),
                    expires_at=float(upload.expires_at),
                )
                for upload in answer.uploads
            ],
        )

    return api
