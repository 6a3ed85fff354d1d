"""The session credential and exchange nonce wire formats, version 1. Written down only here.

The agent's first call exchanges the user-data key (``nlk1_``, :mod:`keysvc.wire.keyformat`), with
an exchange nonce it persisted first, for a session credential that only it holds::

    nls1_<key id: 16>_<secret: 32><checksum: 7>      (61 characters, base32 ``a-z2-7``)

- ``nls1_`` is the fixed prefix: ``nls`` for "nodelogs session", ``1`` for the format version, so
  grep, secret scanners and redaction find sessions apart from keys (:data:`SESSION_PATTERN`).
- The key id is the id of the key the session was exchanged for: the session lives and dies with it.
- The secret is 160 random bits; the checksum is CRC-32 of everything before it, as with keys.

keysvc stores only :func:`session_hash`, a domain-separated SHA-256 (another domain than keys', so a
session can never pass for a key or back). The nonce is 32 base32 characters (160 random bits) the
agent makes with :func:`new_nonce`; keysvc keeps only :func:`nonce_hash`. Comparisons are constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from keysvc.wire.keyformat import CHECKSUM_CHARS, KEY_ID_CHARS, KEY_ID_PATTERN, SECRET_CHARS, b32, checksum
from keysvc.wire.results import Failure, Reason, Success

SESSION_PREFIX = "nls1_"
SESSION_LENGTH = len(SESSION_PREFIX) + KEY_ID_CHARS + 1 + SECRET_CHARS + CHECKSUM_CHARS
NONCE_CHARS = 32

_B32 = "a-z2-7"
#: Finds session credentials in arbitrary text (scanners, redaction, the canary tests).
SESSION_PATTERN = re.compile(
    rf"nls1_[{_B32}]{{{KEY_ID_CHARS}}}_[{_B32}]{{{SECRET_CHARS + CHECKSUM_CHARS}}}(?![{_B32}])"
)
NONCE_PATTERN = re.compile(rf"[{_B32}]{{{NONCE_CHARS}}}")
_FULL = re.compile(
    rf"(?P<body>nls1_(?P<kid>[{_B32}]{{{KEY_ID_CHARS}}})_[{_B32}]{{{SECRET_CHARS}}})"
    rf"(?P<crc>[{_B32}]{{{CHECKSUM_CHARS}}})"
)
_SESSION_DOMAIN = b"nodelogs/session/v1\x00"
_NONCE_DOMAIN = b"nodelogs/exchange-nonce/v1\x00"


@dataclass(frozen=True, slots=True)
class ParsedSession:
    """A session credential that is well-formed and checksummed; it may still be stale or forged."""

    key_id: str
    session: str


def mint_session(key_id: str) -> ParsedSession:
    """Mint a session for ``key_id`` with 160 bits of secret; shown once, stored only as its hash."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("key id is not 16 base32 characters")
    body = f"{SESSION_PREFIX}{key_id}_{b32(secrets.token_bytes(20))}"
    return ParsedSession(key_id=key_id, session=body + checksum(body))


def parse_session(candidate: str) -> Success[ParsedSession] | Failure:
    """Check a presented session's shape and checksum without touching any store."""
    if len(candidate) != SESSION_LENGTH or not candidate.startswith(SESSION_PREFIX):
        return Failure(Reason.MALFORMED)
    match = _FULL.fullmatch(candidate)
    if match is None:
        return Failure(Reason.MALFORMED)
    if not hmac.compare_digest(checksum(match["body"]), match["crc"]):
        return Failure(Reason.BAD_CHECKSUM)
    return Success(ParsedSession(key_id=match["kid"], session=candidate))


def is_session(text: str) -> bool:
    """Return True when a presented credential claims to be a session (by its prefix alone)."""
    return text.startswith(SESSION_PREFIX)


def session_hash(session: str) -> bytes:
    """Return the only form of a session the store ever keeps."""
    return hashlib.sha256(_SESSION_DOMAIN + session.encode("ascii")).digest()


def new_nonce() -> str:
    """Return a fresh exchange nonce (160 random bits), which the agent persists before exchanging."""
    return b32(secrets.token_bytes(20))


def is_nonce(text: str) -> bool:
    """Return True when ``text`` is shaped like an exchange nonce."""
    return NONCE_PATTERN.fullmatch(text) is not None


def nonce_hash(nonce: str) -> bytes:
    """Return the only form of an exchange nonce the store keeps."""
    return hashlib.sha256(_NONCE_DOMAIN + nonce.encode("ascii")).digest()


def digest_matches(presented: bytes, stored: bytes | None) -> bool:
    """Compare two digests in constant time; a missing stored digest never matches."""
    return stored is not None and hmac.compare_digest(presented, stored)
