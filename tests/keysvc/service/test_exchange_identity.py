"""Exchange with an EC2 instance identity document: verified against a trust dir, bound on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from keysvc.aws.identity import TrustDirectory
from keysvc.core.clock import ManualClock
from keysvc.core.identity import IdentityPolicy
from keysvc.core.models import EventType
from keysvc.errors import Refused
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService
from tests.identity_docs import ACCOUNT, FakeAws
from tests.keysvc.conftest import REGIONS, RecordingSigner
from tests.keysvc.service.builders import INSTANCE, T0, add

NONCE = "e" * 32
OTHER_INSTANCE = "i-0fedcba9876543210"


def ingest_with(
    service: KeyService, clock: ManualClock, trust: Path | None, **policy: object
) -> IngestService:
    """An ingest service that trusts ``trust`` (or nothing) under ``policy``."""
    return IngestService(
        service.store,
        service.audit,
        clock,
        signer=RecordingSigner(),
        regions=REGIONS,
        identity=TrustDirectory(trust) if trust is not None else None,
        identity_policy=IdentityPolicy(**policy),  # type: ignore[arg-type]
    )


def refused(ingest: IngestService, key: str, identity: tuple[bytes, str] | None) -> str:
    """Exchange, expect the uniform refusal, and return its precise reason."""
    with pytest.raises(Refused) as caught:
        ingest.exchange(key, NONCE, source="10.0.0.1", identity=identity)
    assert str(caught.value) == "credential refused"
    return caught.value.reason


def test_a_verified_document_binds_an_unbound_key(
    service: KeyService, clock: ManualClock, tmp_path: Path
) -> None:
    """An unbound key is bound to the document's instance, audited `bound` with how it was learned."""
    aws = FakeAws()
    ingest = ingest_with(service, clock, aws.trust(tmp_path / "trust"), allowed_accounts=frozenset({ACCOUNT}))
    issued = service.add_node(add(instance=None), actor="p")
    ingest.exchange(issued.key, NONCE, source="10.0.0.1", identity=aws.document(INSTANCE, pending=T0 + 5))
    assert service.get_key(issued.record.key_id).instance == INSTANCE
    bound = service.audit.records(event=EventType.BOUND)[-1].event
    assert bound.detail["learned"] == "instance identity document"
    assert bound.instance == INSTANCE


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "bad_signature"),
        ("other_ca", "bad_signature"),
        ("other_region", "bad_signature"),
        ("other_instance", "wrong_instance"),
        ("other_account", "wrong_account"),
        ("stale", "stale_document"),
        ("malformed", "bad_document"),
        ("oversized", "bad_document"),
        ("missing", "missing_document"),
    ],
)
def test_a_bad_document_is_refused_precisely_and_changes_nothing(
    service: KeyService, clock: ManualClock, tmp_path: Path, case: str, reason: str
) -> None:
    """Each bad document gets the uniform refusal, its own audit reason, and leaves the key unexchanged."""
    aws = FakeAws()
    trust = aws.trust(tmp_path / "trust")
    ingest = ingest_with(service, clock, trust, require=True, allowed_accounts=frozenset({ACCOUNT}))
    issued = service.add_node(add(), actor="p")
    doc, sig = aws.document(INSTANCE, pending=T0 + 5)
    identity: tuple[bytes, str] | None = {
        "forged": (doc.replace(b"m5.large", b"m5.small"), sig),
        "other_ca": (doc, FakeAws(seed=1).sign(doc)),
        "other_region": aws.document(INSTANCE, pending=T0 + 5, region="eu-west-1"),
        "other_instance": aws.document(OTHER_INSTANCE, pending=T0 + 5),
        "other_account": aws.document(INSTANCE, pending=T0 + 5, accountId="210987654321"),
        "stale": aws.document(INSTANCE, pending=T0 - 3600),
        "malformed": (b"{not json", aws.sign(b"{not json")),
        "oversized": (doc + b" " * 5000, sig),
        "missing": None,
    }[case]
    before = service.get_key(issued.record.key_id)
    assert refused(ingest, issued.key, identity) == reason
    assert service.get_key(issued.record.key_id) == before
    assert service.audit.records(event=EventType.REFUSED)[-1].event.reason == reason


def test_without_a_trust_directory_a_document_cannot_verify(service: KeyService, clock: ManualClock) -> None:
    """A document sent to a keysvc that trusts no certificate is refused, not silently ignored."""
    aws = FakeAws()
    ingest = ingest_with(service, clock, None)
    issued = service.add_node(add(), actor="p")
    assert refused(ingest, issued.key, aws.document(INSTANCE, pending=T0)) == "bad_signature"
    assert ingest.exchange(issued.key, NONCE, source="10.0.0.1").session.startswith("nls1_")
