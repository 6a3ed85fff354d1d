"""Pure identity arithmetic: which file holds which generation, decided from its bytes. No I/O.

A generation is bound to a file by three things (as Vector's file source does):

- the file's **device and inode**, exact while the agent holds the file open (an inode cannot be
  reused while a handle is open), only a hint after a restart;
- a **head fingerprint**: the SHA-256 of the file's first ``head_len`` bytes (up to
  :data:`HEAD_BYTES`), so a reused inode holding a new file is not mistaken for the old one;
- a **tail fingerprint**: the SHA-256 of the :data:`TAIL_BYTES` bytes before the shipped offset, so a
  file rewritten or truncated and regrown below the offset is noticed too.

A rotated file can change inode (a copy for copytruncate, a ``.gz`` written by ``compress``); it is
then found by the fingerprints alone, which needs a head of at least one byte.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

HEAD_BYTES = 256
TAIL_BYTES = 64
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def digest(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def tail_fingerprint(data: bytes, end: int) -> tuple[int, str]:
    """Return ``(start, sha256)`` of the up to 64 bytes before ``end``; ``data`` must end at ``end``.

    ``data`` must reach back at least 64 bytes (or to byte 0) for the answer to be the file's.
    """
    tail = data[-TAIL_BYTES:] if data else b""
    return end - len(tail), digest(tail)


def tail_start(end: int) -> int:
    """Where the tail fingerprint of ``end`` begins."""
    return max(0, end - TAIL_BYTES)


@dataclass(frozen=True, slots=True)
class Expected:
    """What the file of a generation must look like: identity, head, and bytes before ``offset``."""

    dev: int
    ino: int
    offset: int
    head_len: int
    head: str
    fp_start: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Seen:
    """What a candidate file holds: its identity and the bytes :class:`Expected` asks about."""

    dev: int
    ino: int
    compressed: bool
    head: bytes
    tail: bytes


def same_inode(expected: Expected, seen: Seen) -> bool:
    """Whether the candidate is the very file (same device and inode, not a compressed copy)."""
    return not seen.compressed and (seen.dev, seen.ino) == (expected.dev, expected.ino)


def holds(expected: Expected, seen: Seen) -> bool:
    """Whether ``seen`` holds the generation ``expected`` describes, up to its offset.

    The same inode needs matching bytes; another file (a copy, a ``.gz``) needs a non-empty head
    too, since an empty head matches every file.
    """
    if len(seen.head) != expected.head_len or digest(seen.head) != expected.head:
        return False
    if len(seen.tail) != expected.offset - expected.fp_start or digest(seen.tail) != expected.fingerprint:
        return False
    return same_inode(expected, seen) or expected.head_len > 0
