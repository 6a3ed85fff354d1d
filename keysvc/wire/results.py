"""Check results: a check returns :class:`Success` or :class:`Failure` with a precise reason.

The service records the reason in the audit log and answers the caller with a uniform refusal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Reason(enum.StrEnum):
    """Why a credential or request was refused. Values are stable: they appear in audit records."""

    MALFORMED = "malformed"
    BAD_CHECKSUM = "bad_checksum"
    UNKNOWN = "unknown"
    HASH_MISMATCH = "hash_mismatch"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OUT_OF_SCOPE = "out_of_scope"
    WRONG_REGION = "wrong_region"
    WRONG_ACTION = "wrong_action"
    BAD_OBJECT_NAME = "bad_object_name"
    RATE_LIMITED = "rate_limited"
    MISSING_CREDENTIAL = "missing_credential"
    REPLAYED = "replayed"
    BAD_DOCUMENT = "bad_document"
    BAD_SIGNATURE = "bad_signature"
    WRONG_INSTANCE = "wrong_instance"
    WRONG_ACCOUNT = "wrong_account"
    STALE_DOCUMENT = "stale_document"
    MISSING_DOCUMENT = "missing_document"


@dataclass(frozen=True, slots=True)
class Success(Generic[T]):
    """A check passed; ``value`` is what it established."""

    value: T


@dataclass(frozen=True, slots=True)
class Failure:
    """A check failed for ``reason``; ``detail`` is extra context that is never secret."""

    reason: Reason
    detail: str = ""
