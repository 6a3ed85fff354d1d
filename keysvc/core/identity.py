"""The EC2 instance identity document: parse it, verify AWS's signature, check it against a key. Pure.

What EC2 serves (IMDS, ``/latest/dynamic/instance-identity/...``):

- ``document``: JSON with, among others, ``instanceId``, ``accountId``, ``region`` and ``pendingTime``
  (RFC 3339, when the instance was launched);
- ``signature``: base64 of an RSA PKCS#1 v1.5 signature over SHA-256 of the document's exact bytes,
  verifiable with AWS's public RSA certificate for the document's region.

:func:`verify_signature` checks the signature against a certificate the caller loaded (from the
configured trust directory: :mod:`keysvc.aws.identity`); :func:`check_document` then checks a
verified document against the key being exchanged. Each returns a precise :class:`Failure` reason.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keysvc.wire.results import Failure, Reason, Success

MAX_DOCUMENT_BYTES = 4096
MAX_SIGNATURE_CHARS = 1024
REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
INSTANCE_PATTERN = re.compile(r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?")
ACCOUNT_PATTERN = re.compile(r"[0-9]{12}")


@dataclass(frozen=True, slots=True)
class IdentityDocument:
    """The fields of an identity document that keysvc uses."""

    instance_id: str
    account_id: str
    region: str
    pending_time: float


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """What a cluster asks of identity documents: whether one is required, whose, how fresh."""

    require: bool = False
    allowed_accounts: frozenset[str] = frozenset()
    skew_seconds: float = 300.0


def parse_document(raw: bytes) -> Success[IdentityDocument] | Failure:
    """Parse a document's bytes (before its signature is known to be good: use only to pick a certificate)."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        return Failure(Reason.BAD_DOCUMENT, "identity document too large")
    try:
        data = json.loads(raw)
        fields = (str(data["instanceId"]), str(data["accountId"]), str(data["region"]))
        pending = datetime.fromisoformat(str(data["pendingTime"]).replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return Failure(Reason.BAD_DOCUMENT, "not an identity document")
    patterns = (INSTANCE_PATTERN, ACCOUNT_PATTERN, REGION_PATTERN)
    if not all(p.fullmatch(v) for p, v in zip(patterns, fields, strict=True)):
        return Failure(Reason.BAD_DOCUMENT, "identity document fields are malformed")
    return Success(IdentityDocument(*fields, pending_time=pending))


def verify_signature(raw: bytes, signature: str, certificate_pem: bytes) -> Failure | None:
    """Return None when ``signature`` (base64) is the RSA-SHA256 signature of ``raw`` under the cert."""
    if len(signature) > MAX_SIGNATURE_CHARS:
        return Failure(Reason.BAD_SIGNATURE, "signature too long")
    try:
        signed = base64.b64decode("".join(signature.split()), validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except ValueError:  # binascii.Error is a ValueError
        return Failure(Reason.BAD_SIGNATURE, "signature or certificate unreadable")
    if not isinstance(key, rsa.RSAPublicKey):
        return Failure(Reason.BAD_SIGNATURE, "the trusted certificate is not an RSA certificate")
    try:
        key.verify(signed, raw, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return Failure(Reason.BAD_SIGNATURE, "signature does not verify")
    return None


def check_document(
    doc: IdentityDocument, *, bound_instance: str | None, started_at: float, policy: IdentityPolicy
) -> Failure | None:
    """Check a verified document against the key: its instance, an allowed account, launched after AddNode."""
    if bound_instance is not None and doc.instance_id != bound_instance:
        return Failure(
            Reason.WRONG_INSTANCE, f"document for {doc.instance_id}, key bound to {bound_instance}"
        )
    if policy.allowed_accounts and doc.account_id not in policy.allowed_accounts:
        return Failure(Reason.WRONG_ACCOUNT, f"account {doc.account_id} is not allowed")
    if doc.pending_time < started_at - policy.skew_seconds:
        return Failure(Reason.STALE_DOCUMENT, "the instance was launched before its AddNode began")
    return None
