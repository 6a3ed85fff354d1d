"""The pure audit chain: canonical hashing, signatures, and naming the first bad record."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from keysvc.core import auditchain
from keysvc.core.auditchain import ChainHead, Tamper
from keysvc.core.models import AuditEvent, AuditRecord, EventType
from keysvc.errors import AuditIntegrityError
from keysvc.files.audit_signing import AuditSigner

T0 = 1_800_000_000.0


def build(signer: AuditSigner, count: int = 5) -> tuple[list[AuditRecord], ChainHead]:
    """A valid chain of ``count`` records and its signed head."""
    records: list[AuditRecord] = []
    head: ChainHead | None = None
    for i in range(count):
        event = AuditEvent(
            at=T0 + i,
            event=EventType.USED,
            key_id="aaaaaaaaaaaaaaaa",
            source=f"10.0.0.{i}",
            detail={"uses": i + 1},
        )
        record = auditchain.seal(event, head, signer)
        head = auditchain.sign_head(record, signer)
        records.append(record)
    assert head is not None
    return records, head


@pytest.fixture
def signer() -> AuditSigner:
    """A fresh signing key."""
    return AuditSigner.generate()


def verify(
    records: list[AuditRecord], head: ChainHead | None, signer: AuditSigner
) -> auditchain.VerifyReport:
    """Verify trusting only ``signer``."""
    return auditchain.verify_chain(records, head, {signer.signer_id: signer.public_key})


def test_intact_chain_verifies(signer: AuditSigner) -> None:
    """A chain built by seal/sign_head verifies and reports its length and signer."""
    records, head = build(signer)
    report = verify(records, head, signer)
    assert report.ok
    assert (report.records, report.head_seq, report.signers) == (5, 5, (signer.signer_id,))
    assert records[0].prev_hash == auditchain.GENESIS
    assert records[1].prev_hash == records[0].record_hash


def test_empty_chain_verifies(signer: AuditSigner) -> None:
    """No records and no head is a valid, empty chain."""
    assert verify([], None, signer).ok


def test_canonical_form_is_sorted_compact_and_domain_separated(signer: AuditSigner) -> None:
    """The canonical bytes are sorted-key compact JSON, and the hash uses the record domain."""
    event = AuditEvent(at=T0, event=EventType.ISSUED, key_id="k", detail={"b": 1, "a": 2})
    raw = auditchain.canonical_bytes(event, 1, auditchain.GENESIS)
    assert raw.startswith(b'{"actor":null,"at":1800000000.0,"cluster":null,"detail":{"a":2,"b":1}')
    assert (
        auditchain.record_hash(event, 1, auditchain.GENESIS)
        == hashlib.sha256(b"nodelogs/audit-record/v1\x00" + raw).digest()
    )
    assert auditchain.record_hash(event, 2, auditchain.GENESIS) != auditchain.record_hash(
        event, 1, auditchain.GENESIS
    )


def test_edited_record_is_named(signer: AuditSigner) -> None:
    """Changing any field of a record is reported as edited, at that record."""
    records, head = build(signer)
    records[2] = dataclasses.replace(
        records[2], event=dataclasses.replace(records[2].event, source="6.6.6.6")
    )
    problem = verify(records, head, signer).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, Tamper.EDITED)
    assert str(problem).startswith("record 3: edited")


def test_missing_record_is_named(signer: AuditSigner) -> None:
    """A deleted record in the middle is reported as missing by its seq."""
    records, head = build(signer)
    del records[1]
    problem = verify(records, head, signer).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, Tamper.MISSING)


def test_reordered_records_are_named(signer: AuditSigner) -> None:
    """Two records swapped (seq numbers included) are reported as reordered."""
    records, head = build(signer)
    third, fourth = records[2], records[3]
    records[2] = dataclasses.replace(fourth, seq=3)
    records[3] = dataclasses.replace(third, seq=4)
    problem = verify(records, head, signer).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, Tamper.REORDERED)
    out_of_order, head2 = build(signer)
    out_of_order[1], out_of_order[2] = out_of_order[2], out_of_order[1]
    problem = verify(out_of_order, head2, signer).problem
    assert problem is not None
    assert problem.kind in {Tamper.MISSING, Tamper.REORDERED}


def test_truncated_tail_is_named(signer: AuditSigner) -> None:
    """Dropping the last records is caught through the signed head."""
    records, head = build(signer)
    problem = verify(records[:3], head, signer).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, Tamper.TRUNCATED)


def test_rewound_head_is_a_bad_signature(signer: AuditSigner) -> None:
    """Truncating and moving the head back without the key fails the head signature."""
    records, head = build(signer)
    forged = dataclasses.replace(head, seq=3, record_hash=records[2].record_hash)
    problem = verify(records[:3], forged, signer).problem
    assert problem is not None
    assert problem.kind is Tamper.BAD_SIGNATURE


def test_records_beyond_head_are_named(signer: AuditSigner) -> None:
    """Records appended after the signed head are flagged."""
    records, _ = build(signer)
    earlier = auditchain.sign_head(records[2], signer)
    problem = verify(records, earlier, signer).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, Tamper.UNSIGNED_TAIL)
    problem = verify(records, None, signer).problem
    assert problem is not None
    assert problem.kind is Tamper.UNSIGNED_TAIL


def test_swapped_key_is_a_bad_signature(signer: AuditSigner) -> None:
    """A chain re-signed by another key fails against the trusted key, at the first record."""
    records, head = build(signer)
    intruder = AuditSigner.generate()
    problem = verify(records, head, intruder).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (1, Tamper.BAD_SIGNATURE)
    assert "untrusted" in problem.message


def test_edited_and_rehashed_record_is_a_bad_signature(signer: AuditSigner) -> None:
    """An attacker who recomputes the hash of an edited record still cannot sign it."""
    records, head = build(signer)
    edited = dataclasses.replace(records[1].event, source="6.6.6.6")
    new_hash = auditchain.record_hash(edited, 2, records[1].prev_hash)
    records[1] = dataclasses.replace(records[1], event=edited, record_hash=new_hash)
    problem = verify(records, head, signer).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, Tamper.BAD_SIGNATURE)


def test_raise_for_problem(signer: AuditSigner) -> None:
    """A failed report raises AuditIntegrityError with the record and kind in its message."""
    records, head = build(signer)
    with pytest.raises(AuditIntegrityError, match="record 4: truncated tail"):
        verify(records[:3], head, signer).raise_for_problem()


def test_json_round_trip(signer: AuditSigner) -> None:
    """Records and heads survive the export JSON form and still verify."""
    records, head = build(signer)
    parsed = [auditchain.record_from_json(auditchain.record_to_json(r)) for r in records]
    parsed_head = auditchain.head_from_json(auditchain.head_to_json(head))
    assert parsed == records
    assert verify(parsed, parsed_head, signer).ok
    with pytest.raises(AuditIntegrityError):
        auditchain.record_from_json({"seq": 1})


def test_public_key_pem_round_trip(signer: AuditSigner) -> None:
    """The exported PEM loads back to a key with the same fingerprint; garbage is refused."""
    key = auditchain.load_public_key(signer.public_key_pem())
    assert auditchain.fingerprint(key) == signer.signer_id
    with pytest.raises(AuditIntegrityError):
        auditchain.load_public_key("not pem")
