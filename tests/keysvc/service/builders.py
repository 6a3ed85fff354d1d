"""Builders the service suites share: AddNode requests, scopes, refusal reasons, audit events."""

from __future__ import annotations

import pytest

from keysvc.core.models import AddNode, EventType, Scope
from keysvc.errors import Refused
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService

T0 = 1_800_000_000.0
INSTANCE = "i-0123456789abcdef0"


def add(
    cluster: str = "prod",
    node: str = "node-1",
    *,
    op: str = "op-1",
    started: float = T0,
    region: str = "eu",
    instance: str | None = INSTANCE,
) -> AddNode:
    """Build an AddNode with sensible defaults."""
    return AddNode(
        cluster=cluster, node=node, instance=instance, region=region, operation_id=op, started_at=started
    )


def scope(cluster: str = "prod", node: str = "node-1", region: str = "eu") -> Scope:
    """The ingest scope a request wants."""
    return Scope(cluster=cluster, node=node, region=region)


def refusal_reason(ingest: IngestService, presented: str, wanted: Scope | None = None) -> str:
    """Authenticate and return the refusal reason; fail if the key was accepted."""
    with pytest.raises(Refused) as caught:
        ingest.authenticate(presented, wanted=wanted or scope(), source="10.0.0.1")
    assert str(caught.value) == "credential refused"
    return caught.value.reason


def events(service: KeyService, **filters: object) -> list[tuple[EventType, str | None]]:
    """The (event, reason) pairs of the audit log."""
    return [(r.event.event, r.event.reason) for r in service.audit.records(**filters)]  # type: ignore[arg-type]
