"""The provisioner and admin token wire format, version 1. Pure: no I/O.

Separate from ingest keys (:mod:`keysvc.wire.keyformat`), with its own greppable prefix::

    nlt1_<credential id: 16>_<secret: 32>        (lowercase base32, 160-bit secret)

Only :func:`token_hash`, a domain-separated SHA-256 of the whole token, is ever stored. A fast hash
is right because the secret has 160 bits of entropy.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

PREFIX = "nlt1_"
CREDENTIAL_ID = re.compile(r"[a-z2-7]{16}")
TOKEN = re.compile(r"nlt1_(?P<id>[a-z2-7]{16})_[a-z2-7]{32}")
#: Finds provisioner/admin tokens in arbitrary text, for log and error redaction.
TOKEN_PATTERN = re.compile(r"nlt1_[a-z2-7]{16}_[a-z2-7]{32}(?![a-z2-7])")
_HASH_DOMAIN = b"nodelogs/credential/v1\x00"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def token_hash(token: str) -> bytes:
    """Return the only form of a token that is ever stored."""
    return hashlib.sha256(_HASH_DOMAIN + token.encode("utf-8")).digest()


def mint_token() -> tuple[str, str]:
    """Return a fresh ``(credential id, token)``."""
    credential_id = _b32(secrets.token_bytes(10))
    return credential_id, f"{PREFIX}{credential_id}_{_b32(secrets.token_bytes(20))}"
