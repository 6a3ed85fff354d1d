"""Unit tests of keysvc.service.audit: reading, filtering, scrubbing and verifying the chain."""

from __future__ import annotations

import pytest

from keysvc.core.clock import ManualClock
from keysvc.core.models import EventType
from keysvc.errors import AuditIntegrityError
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.keys import KeyService
from keysvc.service.ports import Store
from keysvc.wire.results import Reason
from tests.keysvc.conftest import REGIONS
from tests.keysvc.service.builders import T0, add


def test_audit_log_filters(service: KeyService, clock: ManualClock) -> None:
    """audit_log filters by time, cluster, node, event and key id, and limit keeps the latest."""
    a = service.add_node(add(node="a", op="1"), actor="p")
    clock.advance(10)
    b = service.add_node(add(cluster="dev", node="b", op="2", started=T0 + 10), actor="p")
    clock.advance(10)
    service.revoke(key_id=a.record.key_id, reason="r", actor="op")
    assert len(service.audit.records()) == 3
    assert [r.seq for r in service.audit.records(since=T0 + 10)] == [2, 3]
    assert [r.seq for r in service.audit.records(until=T0 + 10)] == [1]
    assert [r.seq for r in service.audit.records(cluster="dev")] == [2]
    assert [r.seq for r in service.audit.records(node="a")] == [1, 3]
    assert [r.seq for r in service.audit.records(event=EventType.REVOKED)] == [3]
    assert [r.seq for r in service.audit.records(key_id=b.record.key_id)] == [2]
    assert [r.seq for r in service.audit.records(limit=2)] == [2, 3]


def test_record_refusal_is_audited_and_scrubbed(service: KeyService) -> None:
    """Refusals seen by the HTTP layer are recorded with the key's scope; key-shaped detail is redacted."""
    issued = service.add_node(add(), actor="p")
    service.audit.record_refusal(
        reason=Reason.OUT_OF_SCOPE,
        source="10.1.1.1",
        key_id=issued.record.key_id,
        detail={"endpoint": "/v1/admin/keys", "echo": issued.key},
    )
    service.audit.record_refusal(reason=Reason.RATE_LIMITED, source="10.1.1.2", actor="provisioner")
    refused = service.audit.records(event=EventType.REFUSED)
    first, second = refused[0].event, refused[1].event
    assert (first.reason, first.key_id, first.node, first.source) == (
        "out_of_scope",
        issued.record.key_id,
        "node-1",
        "10.1.1.1",
    )
    assert first.detail["endpoint"] == "/v1/admin/keys"
    assert issued.key not in str(first.detail)
    assert (second.reason, second.actor, second.key_id) == ("rate_limited", "provisioner", None)


def test_audit_verifies_and_names_tampering(
    service: KeyService, service_store: Store, signer: AuditSigner
) -> None:
    """verify_audit passes on an intact chain and raises, naming the record, when one is replaced."""
    issued = service.add_node(add(), actor="p")
    service.revoke(key_id=issued.record.key_id, reason="r", actor="op")
    report = service.audit.verify()
    assert (report.records, report.head_seq, report.signers) == (2, 2, (signer.signer_id,))
    other = KeyService(service_store, AuditSigner.generate(), ManualClock(T0), regions=REGIONS)
    with pytest.raises(AuditIntegrityError, match=r"record 1: bad signature"):
        other.audit.verify()


def test_audit_public_keys(service: KeyService, signer: AuditSigner) -> None:
    """The service exports its signer's public key under the signer id."""
    assert service.audit.public_keys() == {signer.signer_id: signer.public_key_pem()}
