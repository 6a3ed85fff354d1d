"""Atomic writes of files that hold secrets or secret hashes: mode 0600, never seen half-written.

This is keysvc's one writer of private files; every file keysvc writes goes through
:func:`write_private` (the agent, which imports nothing of keysvc but the wire contract, has its own
twin in ``agent/private_files.py``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, creating a missing parent directory 0700.

    The bytes go to a temporary file in the same directory (a fresh ``mkstemp`` name, mode 0600),
    which is fsynced and then renamed over ``path``; the directory is fsynced too, so the rename
    survives a crash. With ``replace=False`` the file is hard-linked into place instead, which fails
    with :class:`FileExistsError` when another process created ``path`` first: two processes starting
    at once agree on one file (the audit signing key).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            tmp.replace(path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
