"""Request and response bodies of the HTTP API, as pydantic models.

Request models forbid unknown fields, never coerce types (``"1"`` is not 1) and refuse NaN and
infinities. Identifier syntax is checked by :mod:`keysvc.core.ids` in the service (answering 400), so
the schemas only bound lengths; the OpenAPI document served at ``/openapi.json`` is generated
from these classes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Reason = Annotated[str, Field(min_length=1, max_length=200, description="why, for the audit log")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _printable(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="a stable machine-readable code")
    message: str = Field(description="a human explanation that never contains a secret")


class AddNodeRequest(_Request):
    """The provisioner asks for a key for a node it is adding."""

    cluster: str = Field(max_length=63)
    node: str = Field(max_length=253)
    instance: str | None = Field(
        default=None,
        max_length=19,
        description="the EC2 instance id if known; else bind it later: POST /v1/nodes/instance",
    )
    region: str = Field(max_length=32)
    operation_id: str = Field(max_length=128)
    started_at: str | float = Field(
        description="when the AddNode operation began: RFC 3339 (2026-11-28T08:00:00Z) or Unix seconds"
    )


class AddNodeResponse(BaseModel):
    """The new key, shown exactly once, and what the node needs to use it."""

    key: str
    key_id: str
    expires_at: str = Field(description="RFC 3339, UTC")
    expires_at_unix: float
    endpoint: str = Field(description="the keysvc URL agents in this region use")
    user_data: str = Field(description="cloud-config that installs the key and starts the agent")
    superseded: list[str] = Field(description="ids of earlier keys of this node, revoked by this call")


class TerminatedRequest(_Request):
    """A node is gone: revoke its key, by instance or by cluster and node."""

    instance: str | None = Field(default=None, max_length=19)
    cluster: str | None = Field(default=None, max_length=63)
    node: str | None = Field(default=None, max_length=253)
    reason: Reason | None = None

    _reason_printable = field_validator("reason")(_printable)

    @model_validator(mode="after")
    def _one_selector(self) -> TerminatedRequest:
        by_node = self.cluster is not None and self.node is not None
        partial = (self.cluster is None) != (self.node is None)
        if partial or (self.instance is not None) == by_node:
            raise ValueError("give exactly one of: instance, or cluster and node")
        return self


class BindInstanceRequest(_Request):
    """RunInstances returned: bind the node's live key to its EC2 instance, for termination events."""

    cluster: str = Field(max_length=63)
    node: str = Field(max_length=253)
    instance: str = Field(max_length=19)


class BindInstanceResponse(BaseModel):
    """The key now bound to the instance."""

    key_id: str
    instance: str


class RevokedResponse(BaseModel):
    """The keys revoked by this call (already-ended keys are not listed again)."""

    revoked: list[str]


class GrantObject(_Request):
    """One chunk the agent wants to upload."""

    name: str = Field(description="the object suffix: <source>/g<NNNNNN>/<16-digit start>-<16-digit end>.gz")


class GrantRequest(_Request):
    """An agent asks for upload URLs. An empty ``objects`` list just reports time and expiry.

    ``cluster``, ``node`` and ``region`` are optional claims, all three or none. Without them the
    scope is the key's own record (what current agents do: a mistyped setting then cannot turn into
    a refusal); with them keysvc also checks they match the key, as older agents expect.
    """

    cluster: str | None = Field(default=None, max_length=63)
    node: str | None = Field(default=None, max_length=253)
    region: str | None = Field(default=None, max_length=32)
    objects: list[GrantObject]

    @model_validator(mode="after")
    def _all_claims_or_none(self) -> GrantRequest:
        given = [value is not None for value in (self.cluster, self.node, self.region)]
        if any(given) and not all(given):
            raise ValueError("give cluster, node and region together, or none of them")
        return self


class ExchangeRequest(_Request):
    """The agent's first call: its exchange nonce (persisted before it sends it)."""

    nonce: str = Field(
        min_length=32, max_length=32, pattern="^[a-z2-7]{32}$", description="32 base32 characters"
    )
    identity_document: str | None = Field(
        default=None, max_length=4096, description="the EC2 instance identity document, as IMDS served it"
    )
    identity_signature: str | None = Field(
        default=None, max_length=1024, description="its base64 RSA-SHA256 signature (IMDS .../signature)"
    )

    @model_validator(mode="after")
    def _document_with_signature(self) -> ExchangeRequest:
        if (self.identity_document is None) != (self.identity_signature is None):
            raise ValueError("give identity_document and identity_signature together, or neither")
        return self


class ExchangeResponse(BaseModel):
    """A session credential, shown once; it dies with the key."""

    key_id: str
    session: str = Field(description="the session credential (nls1_...): send it instead of the key")
    superseded: bool = Field(description="true when this replaced an earlier session of the same agent")
    server_time: float
    key_expires_at: float


class Grant(BaseModel):
    """One signed PUT URL."""

    name: str
    object: str = Field(description="the full object name in the bucket")
    url: str
    method: Literal["PUT"]
    headers: dict[str, str] = Field(description="send exactly these headers with the PUT")
    expires_at: float


class GrantResponse(BaseModel):
    """Upload URLs, with the server's clock so the agent need not trust its own."""

    key_id: str
    cluster: str = Field(description="the key's own cluster, from its record")
    node: str = Field(description="the key's own node, from its record")
    region: str = Field(description="the key's own region, from its record")
    server_time: float
    key_expires_at: float
    bucket: str
    grants: list[Grant]


class KeyOut(BaseModel):
    """A key's record; never its secret or hash."""

    key_id: str
    cluster: str
    node: str
    instance: str | None = Field(description="the EC2 instance id; null until it is bound")
    region: str
    operation_id: str
    started_at: str = Field(description="RFC 3339, UTC")
    issued_at: str = Field(description="RFC 3339, UTC")
    expires_at: str = Field(description="RFC 3339, UTC")
    state: str
    ended_at: str | None = Field(description="RFC 3339, UTC")
    end_reason: str | None
    uses: int
    last_used_at: str | None = Field(description="RFC 3339, UTC")


class KeyList(BaseModel):
    """Keys matching a query."""

    keys: list[KeyOut]


class AuditOut(BaseModel):
    """One audit record as stored: numbered, chained and signed."""

    seq: int
    at: str = Field(description="RFC 3339, UTC")
    at_unix: float = Field(description="the same instant in Unix seconds, exactly as hashed into the chain")
    event: str
    key_id: str | None
    cluster: str | None
    node: str | None
    instance: str | None
    region: str | None
    actor: str | None
    source: str | None
    reason: str | None
    detail: dict[str, Any]
    prev_hash: str
    record_hash: str
    signer: str


class AuditList(BaseModel):
    """Audit records matching a query, oldest first."""

    records: list[AuditOut]


class VerifyOut(BaseModel):
    """The result of verifying the whole audit chain."""

    ok: bool
    detail: dict[str, Any]


class RevokeKeyRequest(_Request):
    """Revoke one key."""

    reason: Reason

    _reason_printable = field_validator("reason")(_printable)


class RevocationRequest(_Request):
    """Revoke by exactly one selector: a key id, a cluster, a node of a cluster, or an instance."""

    key_id: str | None = Field(default=None, max_length=64)
    cluster: str | None = Field(default=None, max_length=63)
    node: str | None = Field(default=None, max_length=253)
    instance: str | None = Field(default=None, max_length=19)
    reason: Reason

    _reason_printable = field_validator("reason")(_printable)

    @model_validator(mode="after")
    def _one_selector(self) -> RevocationRequest:
        if self.node is not None and self.cluster is None:
            raise ValueError("node needs its cluster")
        chosen = [self.key_id is not None, self.cluster is not None, self.instance is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of: key_id, cluster (optionally with node), instance")
        return self


class Health(BaseModel):
    """Liveness and readiness answers."""

    status: str
