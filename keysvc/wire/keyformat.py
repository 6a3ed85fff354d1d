"""The ingest key wire format, version 1. This module is the one place it is written down.

A key looks like this (61 characters, lowercase RFC 4648 base32 alphabet ``a-z2-7``)::

    nlk1_<key id: 16>_<secret: 32><checksum: 7>
    nlk1_ilk7stubdv7dcoei_yarwd6ayfpe4p6gmyrpjoqntkiz7b...   (shortened, so no scanner fires)

- ``nlk1_`` is the fixed prefix: ``nlk`` for "nodelogs key" and ``1`` for the format version.
  Secret scanners and our own redaction grep for it (:data:`KEY_PATTERN`).
- The key id is 80 random bits. It is public: audit records, the CLI and revocations use it.
- The secret is 160 random bits from :mod:`secrets`.
- The checksum is CRC-32 of everything before it, as 7 base32 characters (35 bits, the top three
  zero). It catches a typo or a truncated key before any lookup, and lets a scanner confirm a
  match offline. It is not a security control: the secret is.

The store keeps only :func:`key_hash` of the whole key, a domain-separated SHA-256. A fast hash is
right here because the secret has 160 bits of entropy: there is nothing to brute-force.
Comparisons go through :func:`hmac.compare_digest`.

The format is append-only: a future version gets a new prefix (``nlk2_``) and this parser keeps
accepting ``nlk1_``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from keysvc.wire.results import Failure, Reason, Success

PREFIX = "nlk1_"
VERSION = 1
KEY_ID_CHARS = 16
SECRET_CHARS = 32
CHECKSUM_CHARS = 7
KEY_LENGTH = len(PREFIX) + KEY_ID_CHARS + 1 + SECRET_CHARS + CHECKSUM_CHARS

_B32 = "a-z2-7"
#: Finds keys in arbitrary text; used by scanners, redaction and the canary tests.
KEY_PATTERN = re.compile(
    rf"nlk1_[{_B32}]{{{KEY_ID_CHARS}}}_[{_B32}]{{{SECRET_CHARS + CHECKSUM_CHARS}}}(?![{_B32}])"
)
KEY_ID_PATTERN = re.compile(rf"[{_B32}]{{{KEY_ID_CHARS}}}")
_FULL = re.compile(
    rf"(?P<body>nlk1_(?P<kid>[{_B32}]{{{KEY_ID_CHARS}}})_[{_B32}]{{{SECRET_CHARS}}})"
    rf"(?P<crc>[{_B32}]{{{CHECKSUM_CHARS}}})"
)
_HASH_DOMAIN = b"nodelogs/ingest-key/v1\x00"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A key that is well-formed and whose checksum matches; it may still be unknown or revoked."""

    key_id: str
    key: str


def b32(data: bytes) -> str:
    """Encode ``data`` in unpadded lowercase base32, the alphabet of every nodelogs credential."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def checksum(body: str) -> str:
    """Return the 7-character CRC-32 checksum of a credential's ``body`` (shared with sessions)."""
    crc = zlib.crc32(body.encode("ascii"))
    return "".join("abcdefghijklmnopqrstuvwxyz234567"[(crc >> shift) & 31] for shift in range(30, -1, -5))


def new_key_id() -> str:
    """Return a fresh random public key id (80 bits)."""
    return b32(secrets.token_bytes(10))


def mint(key_id: str | None = None) -> ParsedKey:
    """Mint a new key with 160 bits of secret; the caller shows it once and stores only its hash."""
    kid = key_id if key_id is not None else new_key_id()
    if not KEY_ID_PATTERN.fullmatch(kid):
        raise ValueError("key id is not 16 base32 characters")
    body = f"{PREFIX}{kid}_{b32(secrets.token_bytes(20))}"
    return ParsedKey(key_id=kid, key=body + checksum(body))


def parse(candidate: str) -> Success[ParsedKey] | Failure:
    """Check a presented key's shape and checksum without touching any store."""
    if len(candidate) != KEY_LENGTH or not candidate.startswith(PREFIX):
        return Failure(Reason.MALFORMED)
    match = _FULL.fullmatch(candidate)
    if match is None:
        return Failure(Reason.MALFORMED)
    if not hmac.compare_digest(checksum(match["body"]), match["crc"]):
        return Failure(Reason.BAD_CHECKSUM)
    return Success(ParsedKey(key_id=match["kid"], key=candidate))


def key_hash(key: str) -> bytes:
    """Return the only form of a key the store ever keeps."""
    return hashlib.sha256(_HASH_DOMAIN + key.encode("ascii")).digest()


def hash_matches(key: str, stored: bytes) -> bool:
    """Compare a presented key against a stored hash in constant time."""
    return hmac.compare_digest(key_hash(key), stored)


def looks_like_key(text: str) -> bool:
    """Return True when ``text`` contains anything shaped like an ingest key."""
    return KEY_PATTERN.search(text) is not None
