"""The wire contract keysvc shares with the agent: the one part of keysvc the agent imports.

It is pure and import-light (standard library only), because it runs on every booting node, where
none of keysvc's dependencies are installed. Everything public is named here; the agent imports
from ``keysvc.wire`` and nothing else of keysvc (a test in ``tests/test_layers.py`` holds it to that).

- :mod:`keysvc.wire.keyformat`: the ingest key format (``nlk1_``), its checksum and hash.
- :mod:`keysvc.wire.sessionformat`: the session credential (``nls1_``) and the exchange nonce.
- :mod:`keysvc.wire.objectnames`: how chunk objects, generation records and gap records are named.
- :mod:`keysvc.wire.results`: :class:`Success` and :class:`Failure` with a :class:`Reason`.
"""

from __future__ import annotations

from keysvc.wire.keyformat import (
    CHECKSUM_CHARS,
    KEY_ID_CHARS,
    KEY_ID_PATTERN,
    KEY_PATTERN,
    SECRET_CHARS,
    ParsedKey,
    looks_like_key,
)
from keysvc.wire.keyformat import PREFIX as KEY_PREFIX
from keysvc.wire.keyformat import parse as parse_key
from keysvc.wire.objectnames import (
    ChunkName,
    MarkerName,
    chunk_suffix,
    gap_suffix,
    generation_suffix,
    parse_marker,
    parse_object_suffix,
    parse_suffix,
    stream_name,
)
from keysvc.wire.results import Failure, Reason, Success
from keysvc.wire.sessionformat import (
    NONCE_CHARS,
    SESSION_PATTERN,
    SESSION_PREFIX,
    ParsedSession,
    is_nonce,
    new_nonce,
    parse_session,
)

__all__ = [
    "CHECKSUM_CHARS",
    "KEY_ID_CHARS",
    "KEY_ID_PATTERN",
    "KEY_PATTERN",
    "KEY_PREFIX",
    "NONCE_CHARS",
    "SECRET_CHARS",
    "SESSION_PATTERN",
    "SESSION_PREFIX",
    "ChunkName",
    "Failure",
    "MarkerName",
    "ParsedKey",
    "ParsedSession",
    "Reason",
    "Success",
    "chunk_suffix",
    "gap_suffix",
    "generation_suffix",
    "is_nonce",
    "looks_like_key",
    "new_nonce",
    "parse_key",
    "parse_marker",
    "parse_object_suffix",
    "parse_session",
    "parse_suffix",
    "stream_name",
]
