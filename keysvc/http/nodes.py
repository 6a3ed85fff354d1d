"""Provisioner endpoints: AddNode, bind the node's instance (after RunInstances), and node terminated."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Security
from fastapi.security import HTTPBearer

from keysvc.core.models import AddNode
from keysvc.errors import InvalidInput
from keysvc.files.credentials import Credential
from keysvc.http.admin import revoke_node
from keysvc.http.auth import requires
from keysvc.http.context import Context
from keysvc.http.responses import AUTHED, documented
from keysvc.http.schemas import (
    AddNodeRequest,
    AddNodeResponse,
    BindInstanceRequest,
    BindInstanceResponse,
    ErrorBody,
    RevokedResponse,
    TerminatedRequest,
)

bearer = HTTPBearer(auto_error=False, description="provisioner token (nlt1_...)")
BIND_RESPONSES = {
    **documented(*AUTHED),
    404: {"model": ErrorBody, "description": "the node has no live key"},
    409: {"model": ErrorBody, "description": "the node's key is already bound to another instance"},
}


def parse_started_at(value: str | float) -> float:
    """Return Unix seconds from RFC 3339 text (with a zone) or from a number."""
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise InvalidInput("started_at must be a non-negative number of Unix seconds")
        return value
    if len(value) > 40:
        raise InvalidInput("started_at is not an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("started_at is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None or "T" not in value.upper():
        raise InvalidInput("started_at must be RFC 3339 with a time zone, e.g. 2026-11-28T08:00:00Z")
    return parsed.timestamp()


def rfc3339(unix: float) -> str:
    """Return ``unix`` as RFC 3339 in UTC with a ``Z``."""
    moment = datetime.fromtimestamp(unix, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def router(ctx: Context) -> APIRouter:
    """Build the provisioner routes."""
    api = APIRouter(tags=["provisioner"], dependencies=[Security(bearer)])
    adder = Depends(requires(ctx.guard, "nodes:add"))
    terminator = Depends(requires(ctx.guard, "nodes:terminate"))

    @api.post(
        "/v1/nodes",
        status_code=201,
        response_model=AddNodeResponse,
        responses=documented(*AUTHED, 409),
        summary="AddNode: mint a node's ingest key and its user data",
    )
    def add_node(body: AddNodeRequest, caller: Credential = adder) -> AddNodeResponse:
        return _add_node(ctx, body, actor=f"credential:{caller.name}")

    @api.post(
        "/v1/nodes/instance",
        response_model=BindInstanceResponse,
        responses=BIND_RESPONSES,
        summary="Bind the node's live key to its EC2 instance, once RunInstances has returned its id",
    )
    def bind_instance(body: BindInstanceRequest, caller: Credential = adder) -> BindInstanceResponse:
        record = ctx.keys.bind_instance(
            cluster=body.cluster, node=body.node, instance=body.instance, actor=f"credential:{caller.name}"
        )
        return BindInstanceResponse(key_id=record.key_id, instance=body.instance)

    @api.post(
        "/v1/nodes/terminated",
        response_model=RevokedResponse,
        responses=documented(*AUTHED),
        summary="A node terminated: revoke its key by instance, or by cluster and node",
    )
    def terminated(body: TerminatedRequest, caller: Credential = terminator) -> RevokedResponse:
        reason = body.reason or "terminated"
        actor = f"credential:{caller.name}"
        if body.instance is not None:
            revoked = ctx.keys.revoke(
                reason=reason, actor=actor, instance=body.instance, channel="terminated"
            )
        elif body.cluster is not None and body.node is not None:
            revoked = revoke_node(
                ctx, reason=reason, actor=actor, cluster=body.cluster, node=body.node, channel="terminated"
            )
        else:
            raise InvalidInput("give exactly one of: instance, or cluster and node")
        return RevokedResponse(revoked=revoked)

    return api


def _add_node(ctx: Context, body: AddNodeRequest, *, actor: str) -> AddNodeResponse:
    """Mint the key through the service and answer with it, its expiry and its user data."""
    issued = ctx.keys.add_node(
        AddNode(
            cluster=body.cluster,
            node=body.node,
            instance=body.instance,
            region=body.region,
            operation_id=body.operation_id,
            started_at=parse_started_at(body.started_at),
        ),
        actor=actor,
    )
    ctx.metrics.keys_issued.inc()
    record = issued.record
    return AddNodeResponse(
        key=issued.key,
        key_id=record.key_id,
        expires_at=rfc3339(record.expires_at),
        expires_at_unix=record.expires_at,
        endpoint=ctx.keys.region(record.region).endpoint,
        user_data=ctx.keys.user_data(
            "cloud-config", issued.key, cluster=record.cluster, node=record.node, region=record.region
        ),
        superseded=list(issued.superseded),
    )
