"""Upload grant policy: how long a signed URL lives and which headers it binds. Pure: takes ``now``.

Each grant is one V4 signed PUT URL for one chunk. The signature covers these headers, so the
bucket refuses a PUT that changes any of them (real GCS checks; see TESTING.md for the emulator)::

    content-type: application/gzip                  the chunk is a gzip member, stored byte for byte
    x-goog-if-generation-match: 0                   create-only: an existing object is never replaced
    x-goog-content-length-range: 0,<max chunk>      the upload is bounded in size

There is deliberately no ``Content-Encoding``: GCS (and fake-gcs-server) would decompress on
write, and the agent's byte-exact reconstruction depends on getting back what it sent.

A URL never outlives the key that obtained it. The V4 date is whole seconds, so the lifetime is
computed from the floored request time: ``date + lifetime <= key expiry`` always holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from keysvc.errors import InvalidObjectName
from keysvc.wire.objectnames import object_name, parse_object_suffix

CONTENT_TYPE = "application/gzip"
MAX_URL_TTL_SECONDS = 900
"""The longest a signed URL may live, whatever the configuration says."""


def upload_headers(max_chunk_bytes: int) -> dict[str, str]:
    """Return the exact headers signed into every URL and sent by the agent with every PUT."""
    return {
        "content-type": CONTENT_TYPE,
        "x-goog-if-generation-match": "0",
        "x-goog-content-length-range": f"0,{max_chunk_bytes}",
    }


def signing_time(now: float) -> int:
    """Return the whole second a URL is signed at (what its ``X-Goog-Date`` says)."""
    return math.floor(now)


def url_lifetime(now: float, key_expires_at: float, url_ttl_seconds: int) -> int:
    """Return the lifetime in whole seconds of a URL signed at ``now``; 0 when the key has no second left.

    It is the configured TTL (at most 15 minutes), cut so that the URL expires no later than the key.
    """
    ttl = min(url_ttl_seconds, MAX_URL_TTL_SECONDS)
    left = math.floor(key_expires_at) - signing_time(now)
    return max(0, min(ttl, left))


@dataclass(frozen=True, slots=True)
class GrantPlan:
    """One URL to sign: the suffix the agent proposed and the full object name keysvc fixed."""

    name: str
    object: str
    signed_at: int
    expires_in: int

    @property
    def expires_at(self) -> int:
        """When the URL stops working."""
        return self.signed_at + self.expires_in


def plan_grants(
    suffixes: Sequence[str],
    *,
    prefix: str,
    cluster: str,
    node: str,
    now: float,
    key_expires_at: float,
    url_ttl_seconds: int,
) -> list[GrantPlan]:
    """Validate every proposed suffix and fix each object name under the node's own prefix.

    Raises :class:`~keysvc.errors.InvalidObjectName` for the first bad suffix; nothing is planned
    unless every name is good. Duplicate names are refused too, as a request bug.
    """
    seen: set[str] = set()
    for suffix in suffixes:
        parse_object_suffix(suffix)
        if suffix in seen:
            raise InvalidObjectName("the same object name appears twice in one request")
        seen.add(suffix)
    signed_at = signing_time(now)
    lifetime = url_lifetime(now, key_expires_at, url_ttl_seconds)
    return [
        GrantPlan(
            name=suffix,
            object=object_name(prefix, cluster, node, suffix),
            signed_at=signed_at,
            expires_in=lifetime,
        )
        for suffix in suffixes
    ]
