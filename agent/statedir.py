"""Make sure the state directory is usable before anything else runs.

A state directory that cannot be created or written (``--state-dir /proc/x``, a read-only mount, a
file in the way, no permission) is a configuration error: retrying cannot fix it, so the agent
stops at once with exit 2 and one line naming the setting, instead of a traceback and a systemd
restart loop. Errors that may pass (no space left, an I/O error) stay ordinary failures (exit 1).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from agent.errors import AgentError, ConfigError

#: errno values that no retry can fix.
_UNFIXABLE = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.ENOENT,
        errno.EEXIST,
        errno.EINVAL,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EISDIR,
    }
)
_PROBE = ".nodelogs-write-test"


def prepare(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and prove a file can be written and fsynced in it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        probe = path / _PROBE
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        message = f"state_dir {path} cannot be used: {why} (set NODELOGS_STATE_DIR or --state-dir)"
        if exc.errno in _UNFIXABLE:
            raise ConfigError(message) from exc
        raise AgentError(message) from exc
    return path
