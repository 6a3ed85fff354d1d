"""The agent's one writer of private files: atomic, 0600 by default, never seen half-written.

Every file the agent keeps (positions, intents, the journal cursor, the lifetime ledger, the
finished marker) goes through :func:`atomic_write`: a temporary file in the same directory, its
mode forced with ``fchmod`` (a stale temporary file left with looser permissions cannot carry them
over), fsync, ``os.replace``, then an fsync of the directory so the rename survives a crash. keysvc
has its twin in ``keysvc/files/private_files.py``; the agent imports nothing of keysvc but its wire
contract.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)
