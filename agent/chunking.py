"""Pure chunk arithmetic: source ids, where to cut the next chunk, and deterministic gzip.

No I/O and no clock: callers pass the bytes and the elapsed times.

- A **source id** is an object-name-safe slug of the path (or ``journal:<unit>``) plus the first 8 hex
  digits of the SHA-256 of the full string, so two paths that slug alike still differ:
  ``/var/log/cloud-init-output.log`` -> ``var-log-cloud-init-output.log-cfeaa584``.
- A **chunk** is cut when ``chunk_bytes`` are pending (at the last newline in its second half when
  there is one, else at the size), or when the oldest pending byte has waited ``chunk_seconds`` (at
  the last newline; a last line without newline waits until the source has been quiet for
  ``partial_line_seconds``, or for the final flush).
- **gzip** output is deterministic (mtime 0, no file name), so a re-staged chunk is the same object.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass

from keysvc.wire import chunk_suffix, stream_name

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SLUG = 128 - 9


def source_id(spec: str) -> str:
    """Return the object-name-safe id of a source given as a path or ``journal:<unit>``."""
    digest = hashlib.sha256(spec.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    slug = _UNSAFE.sub("-", spec)
    while ".." in slug:
        slug = slug.replace("..", ".")
    slug = slug.lstrip("-._")[:_MAX_SLUG].rstrip("-.")
    return f"{slug}-{digest}" if slug else digest


def object_suffix(source: str, generation: int, start: int, end: int) -> str:
    """Return the object suffix for bytes ``[start, end)`` of a source's generation."""
    return chunk_suffix(source, stream_name(generation), start, end)


@dataclass(frozen=True, slots=True)
class CutPolicy:
    """When to cut a chunk: by size, by age, and when to give up waiting for a newline."""

    chunk_bytes: int = 1024 * 1024
    chunk_seconds: float = 2.0
    partial_line_seconds: float = 5.0


def cut_length(block: bytes, policy: CutPolicy, *, waited: float, quiet: float, final: bool) -> int:
    """Return how many bytes of ``block`` to ship as the next chunk now; 0 means wait.

    ``block`` holds the pending bytes from the next offset to ship (at most ``chunk_bytes`` of
    them), ``waited`` is how long the oldest of them has been pending, ``quiet`` how long since the
    source last grew, and ``final`` says everything must go (shutdown, expiry, a rotated file).
    """
    if not block:
        return 0
    if len(block) >= policy.chunk_bytes:
        block = block[: policy.chunk_bytes]
        newline = block.rfind(b"\n")
        return newline + 1 if newline >= len(block) // 2 else len(block)
    if final:
        return len(block)
    if waited < policy.chunk_seconds:
        return 0
    newline = block.rfind(b"\n")
    if newline >= 0:
        return newline + 1
    return len(block) if quiet >= policy.partial_line_seconds else 0


def compress(data: bytes, level: int) -> bytes:
    """Gzip ``data`` deterministically (mtime 0, no name)."""
    return gzip.compress(data, compresslevel=level, mtime=0)
