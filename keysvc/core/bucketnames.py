"""GCS naming rules for the configured bucket, object prefix and endpoint. Pure: no I/O.

Each check returns ``None`` when the value is usable, else a short reason the configuration error
shows next to the setting's name. The rules are GCS's own
(https://cloud.google.com/storage/docs/buckets#naming, .../objects#naming):

- a bucket name is 3..63 characters of ``a-z 0-9 - _ .`` (up to 222 with dots, each dot-separated
  part at most 63), starts and ends with a letter or digit, is not an IPv4 address, and neither starts
  with ``goog`` nor contains ``google``;
- an object prefix is one or more ``/``-separated segments, none empty, ``.`` or ``..``, with no control
  character and none of ``# ? [ ] *`` (which URLs and tools treat specially), at most 512 bytes, so that
  ``<prefix>/<cluster>/<node>/...`` can never climb out of, or past, its own folder;
- an endpoint is ``http(s)://host[:port]`` with no path, query, fragment or credentials; an explicit
  default port (``:443`` for https, ``:80`` for http) is dropped, because a V4 signature covers the Host
  header and HTTP clients never send a default port in it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PREFIX_FORBIDDEN = set("#?[]*\\")
MAX_PREFIX_BYTES = 512
DEFAULT_PORTS = {"https": 443, "http": 80}


def bucket_problem(name: str) -> str | None:
    """Why ``name`` is not a valid GCS bucket name, or None."""
    limit = 222 if "." in name else 63
    if not 3 <= len(name) <= limit:
        return f"must be 3..{limit} characters"
    if not _BUCKET_CHARS.match(name):
        return "may hold only a-z, 0-9, '-', '_' and '.', and must start and end with a letter or digit"
    if any(not 1 <= len(part) <= 63 for part in name.split(".")):
        return "each dot-separated part must be 1..63 characters"
    if _IPV4.match(name):
        return "must not look like an IP address"
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "must not start with 'goog' or contain 'google'"
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` is not a safe object-name prefix, or None."""
    checks = (
        (not prefix, "must not be empty"),
        (
            len(prefix.encode("utf-8", "surrogatepass")) > MAX_PREFIX_BYTES,
            f"must be at most {MAX_PREFIX_BYTES} bytes",
        ),
        (any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in prefix), "must not contain control characters"),
        (any(c in _PREFIX_FORBIDDEN for c in prefix), "must not contain any of # ? [ ] * \\"),
        (
            any(s in {"", ".", ".."} for s in prefix.split("/")),
            "must be '/'-separated segments, none empty, '.' or '..' (no leading, trailing or double '/')",
        ),
        (prefix.startswith(".well-known/acme-challenge"), "must not start with .well-known/acme-challenge"),
    )
    return next((reason for failed, reason in checks if failed), None)


def normalised_endpoint(url: str) -> tuple[str, str | None]:
    """Return ``(url without a default port, None)``, or ``(url, reason)`` when it is unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url, "is not a valid URL"
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return url, "must be http://host[:port] or https://host[:port]"
    if parts.username is not None or parts.password is not None:
        return url, "must not carry credentials"
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return url, "must have no path, query or fragment"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}", None
    return f"{parts.scheme}://{host}:{port}", None
