"""The audit hash chain: canonical records, domain-separated hashes, Ed25519 signatures, verification.

Pure: no I/O and no clock. The store keeps what this module produces; the service appends and verifies.

Each record is serialized canonically (sorted-key JSON of the event fields plus ``seq`` and
``prev_hash``), hashed with SHA-256 behind the domain prefix ``b"nodelogs/audit-record/v1\\0"``, and
chained: ``prev_hash`` is the hash of the record before it (32 zero bytes for the first record).

**Every record is signed**, rather than periodic checkpoints, because:

- verification can then name the exact record that is bad, not just a window between checkpoints;
- there is no unsigned tail: a checkpoint scheme leaves the records since the last checkpoint open to
  silent rewriting by anyone with write access to the database;
- it is cheap: an Ed25519 signature costs 25-60 µs here, well below the cost of the transaction that
  commits the record (``tests/benchmarks/bench_keys.py`` measures both).

The chain head ``(seq, hash)`` is kept apart from the records and re-signed, under its own domain
prefix, on every append. Deleting records from the end would otherwise leave a valid, shorter chain;
with the signed head, a truncated tail is caught.

A signer is named by the fingerprint of its public key (:func:`fingerprint`). Verification trusts only
the public keys it is given, so a swapped signing key shows up as a bad signature.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keysvc.core.models import AuditEvent, AuditRecord, EventType
from keysvc.errors import AuditIntegrityError

RECORD_DOMAIN = b"nodelogs/audit-record/v1\x00"
HEAD_DOMAIN = b"nodelogs/audit-head/v1\x00"
GENESIS = bytes(32)
"""The ``prev_hash`` of the first record."""


class Signer(Protocol):
    """Signs audit records; named by the fingerprint of its public key."""

    @property
    def signer_id(self) -> str:
        """The fingerprint of the public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return an Ed25519 signature over ``message``."""
        ...

    def public_key_pem(self) -> str:
        """The public key as PEM, for verifiers."""
        ...


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record's sequence number and hash, signed."""

    seq: int
    record_hash: bytes
    signature: bytes
    signer: str


class Tamper(enum.StrEnum):
    """What is wrong with the first bad record. Values are stable: the CLI prints them."""

    EDITED = "edited"
    MISSING = "missing"
    REORDERED = "reordered"
    TRUNCATED = "truncated tail"
    BAD_SIGNATURE = "bad signature"
    UNSIGNED_TAIL = "records beyond the signed head"


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong in a chain; ``seq`` names the record (or the head's seq)."""

    seq: int
    kind: Tamper
    message: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.kind.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of walking a chain."""

    records: int
    head_seq: int
    signers: tuple[str, ...]
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        """True when the whole chain verified."""
        return self.problem is None

    def raise_for_problem(self) -> VerifyReport:
        """Return self when intact, else raise :class:`AuditIntegrityError` naming the first bad record."""
        if self.problem is not None:
            raise AuditIntegrityError(str(self.problem))
        return self


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """Name a signing key: ``ed25519:`` and the first 16 bytes of SHA-256 of its raw form, in hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """Serialize a public key as SubjectPublicKeyInfo PEM, the form verifiers are given."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; raise :class:`AuditIntegrityError` when it is not Ed25519."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuditIntegrityError("public key is not valid PEM") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditIntegrityError("public key is not an Ed25519 key")
    return key


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The event's own fields as JSON-ready data: what a record says happened."""
    return {
        "at": event.at,
        "event": event.event.value,
        "key_id": event.key_id,
        "cluster": event.cluster,
        "node": event.node,
        "instance": event.instance,
        "region": event.region,
        "actor": event.actor,
        "source": event.source,
        "reason": event.reason,
        "detail": event.detail,
    }


def canonical_bytes(event: AuditEvent, seq: int, prev_hash: bytes) -> bytes:
    """Serialize a record's content canonically: sorted-key, compact, ASCII JSON."""
    content: dict[str, Any] = {"v": 1, "seq": seq, "prev_hash": prev_hash.hex(), **event_fields(event)}
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def record_hash(event: AuditEvent, seq: int, prev_hash: bytes) -> bytes:
    """Hash a record's canonical form under the record domain."""
    return hashlib.sha256(RECORD_DOMAIN + canonical_bytes(event, seq, prev_hash)).digest()


def head_message(seq: int, head_hash: bytes) -> bytes:
    """The bytes a head signature covers, under the head domain."""
    return HEAD_DOMAIN + seq.to_bytes(8, "big") + head_hash


def seal(event: AuditEvent, previous: ChainHead | None, signer: Signer) -> AuditRecord:
    """Chain ``event`` after ``previous`` (None for the first record) and sign it."""
    seq = 1 if previous is None else previous.seq + 1
    prev = GENESIS if previous is None else previous.record_hash
    digest = record_hash(event, seq, prev)
    return AuditRecord(
        seq=seq,
        event=event,
        prev_hash=prev,
        record_hash=digest,
        signature=signer.sign(digest),
        signer=signer.signer_id,
    )


def sign_head(record: AuditRecord, signer: Signer) -> ChainHead:
    """Make the signed head that points at ``record``."""
    return ChainHead(
        seq=record.seq,
        record_hash=record.record_hash,
        signature=signer.sign(head_message(record.seq, record.record_hash)),
        signer=signer.signer_id,
    )


def _signature_ok(
    trusted: Mapping[str, Ed25519PublicKey], signer: str, signature: bytes, message: bytes
) -> bool:
    key = trusted.get(signer)
    if key is None:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _position_problem(seq: int, expected: int) -> Problem | None:
    """A sequence number ahead of the expected one means records are missing; behind it, reordered."""
    if seq > expected:
        missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
        return Problem(expected, Tamper.MISSING, f"record(s) {missing} missing before record {seq}")
    if seq < expected:
        return Problem(seq, Tamper.REORDERED, f"record {seq} appears after record {expected - 1}")
    return None


def _record_problem(
    record: AuditRecord,
    expected: int,
    previous_hash: bytes,
    by_hash: Mapping[bytes, int],
    trusted: Mapping[str, Ed25519PublicKey],
) -> Problem | None:
    """Check one record against its expected position; return the first thing wrong with it."""
    misplaced = _position_problem(record.seq, expected)
    if misplaced is not None:
        return misplaced
    linked = record.prev_hash == previous_hash
    points_to = by_hash.get(record.prev_hash)
    if not linked and points_to is not None and points_to != record.seq - 1:
        return Problem(
            record.seq, Tamper.REORDERED, f"it chains to record {points_to}, not to record {record.seq - 1}"
        )
    if record_hash(record.event, record.seq, record.prev_hash) != record.record_hash:
        return Problem(record.seq, Tamper.EDITED, "its content does not match its hash")
    if not _signature_ok(trusted, record.signer, record.signature, record.record_hash):
        why = "signed by an untrusted key" if record.signer not in trusted else "signature does not verify"
        return Problem(record.seq, Tamper.BAD_SIGNATURE, f"{why} ({record.signer})")
    if not linked:
        return Problem(record.seq, Tamper.EDITED, f"its previous-hash does not match record {record.seq - 1}")
    return None


def _head_problem(
    head: ChainHead | None, last: int, last_hash: bytes, trusted: Mapping[str, Ed25519PublicKey]
) -> Problem | None:
    """Check the signed head against the last good record (seq ``last``, hash ``last_hash``)."""
    if head is None:
        return Problem(1, Tamper.UNSIGNED_TAIL, "records exist but there is no signed head") if last else None
    if not _signature_ok(trusted, head.signer, head.signature, head_message(head.seq, head.record_hash)):
        return Problem(
            head.seq, Tamper.BAD_SIGNATURE, f"the chain head's signature does not verify ({head.signer})"
        )
    if head.seq > last:
        return Problem(
            last + 1,
            Tamper.TRUNCATED,
            f"the signed head names record {head.seq} but the chain ends at record {last}",
        )
    if head.seq < last:
        return Problem(head.seq + 1, Tamper.UNSIGNED_TAIL, f"the signed head ends at record {head.seq}")
    if head.record_hash != last_hash:
        return Problem(head.seq, Tamper.EDITED, "it does not match the hash the signed head holds")
    return None


def verify_chain(
    records: Iterable[AuditRecord], head: ChainHead | None, trusted: Mapping[str, Ed25519PublicKey]
) -> VerifyReport:
    """Walk ``records`` in the order given and report the first bad record and what is wrong with it.

    ``trusted`` maps signer ids to the only public keys whose signatures count.
    """
    chain = list(records)
    by_hash = {record.record_hash: record.seq for record in chain}
    head_seq = head.seq if head is not None else 0
    signers: list[str] = []
    previous_hash = GENESIS
    expected = 1
    for count, record in enumerate(chain):
        problem = _record_problem(record, expected, previous_hash, by_hash, trusted)
        if problem is not None:
            return VerifyReport(records=count, head_seq=head_seq, signers=tuple(signers), problem=problem)
        if record.signer not in signers:
            signers.append(record.signer)
        previous_hash = record.record_hash
        expected = record.seq + 1
    problem = _head_problem(head, expected - 1, previous_hash, trusted)
    return VerifyReport(records=len(chain), head_seq=head_seq, signers=tuple(signers), problem=problem)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    """Render a record as JSON-ready data, for exports and ``--output json``."""
    return {
        "seq": record.seq,
        **event_fields(record.event),
        "prev_hash": record.prev_hash.hex(),
        "record_hash": record.record_hash.hex(),
        "signature": _b64(record.signature),
        "signer": record.signer,
    }


def record_from_json(data: Mapping[str, Any]) -> AuditRecord:
    """Parse what :func:`record_to_json` wrote; raise :class:`AuditIntegrityError` when it is malformed."""
    try:
        event = AuditEvent(
            at=float(data["at"]),
            event=EventType(data["event"]),
            key_id=data["key_id"],
            cluster=data["cluster"],
            node=data["node"],
            instance=data["instance"],
            region=data["region"],
            actor=data["actor"],
            source=data["source"],
            reason=data["reason"],
            detail=dict(data["detail"]),
        )
        return AuditRecord(
            seq=int(data["seq"]),
            event=event,
            prev_hash=bytes.fromhex(data["prev_hash"]),
            record_hash=bytes.fromhex(data["record_hash"]),
            signature=base64.b64decode(data["signature"], validate=True),
            signer=str(data["signer"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditIntegrityError(f"malformed audit record near seq {data.get('seq')!r}") from exc


def head_to_json(head: ChainHead) -> dict[str, Any]:
    """Render a chain head as JSON-ready data."""
    return {
        "seq": head.seq,
        "record_hash": head.record_hash.hex(),
        "signature": _b64(head.signature),
        "signer": head.signer,
    }


def head_from_json(data: Mapping[str, Any]) -> ChainHead:
    """Parse what :func:`head_to_json` wrote."""
    try:
        return ChainHead(
            seq=int(data["seq"]),
            record_hash=bytes.fromhex(data["record_hash"]),
            signature=base64.b64decode(data["signature"], validate=True),
            signer=str(data["signer"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditIntegrityError("malformed audit chain head") from exc
