"""The node's key file and the "finished" marker in the state directory.

The key comes only from a root-only file (never argv, which any process can read in ``/proc``).
The file must be a regular file, owned by root (or the agent's own user), that neither group nor
other can read (no symlink is followed); otherwise the agent refuses
to start and says how to fix it. After the key expires or is refused, the agent writes a marker in
its state directory (the key id and why, never the key) and deletes the key file, so a restart
exits at once with code 12 instead of retrying a dead key.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import KeyFileInsecure, KeyUnavailable
from agent.private_files import atomic_write
from keysvc.wire import Success, parse_key

if TYPE_CHECKING:
    from agent.session import Session

FINISHED_FILE = "finished.json"
#: Written next to the key file by the user data (IMDSv2), read once for the exchange.
IDENTITY_DOCUMENT_FILE = "identity-document"
IDENTITY_SIGNATURE_FILE = "identity-signature"
_MAX_IDENTITY_BYTES = 4096
_MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class NodeKey:
    """The key as read from its file. ``repr`` never shows the secret.

    ``session``: where the key's exchange for a session is held (:mod:`agent.session`); None only for
    callers that present the key itself (tests of the grant client, older keysvc protocols).
    """

    key_id: str
    secret: str
    session: Session | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"NodeKey(key_id={self.key_id!r})"


def read_key(path: Path) -> NodeKey:
    """Read and check the key file: absent -> :class:`KeyUnavailable`; unsafe or malformed -> insecure."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise KeyUnavailable(f"key file {path} is absent: nothing to do for this node") from exc
    except OSError as exc:
        raise KeyFileInsecure(f"key file {path} cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileInsecure(f"key file {path} is not a regular file")
        if info.st_uid not in (0, os.geteuid()):
            raise KeyFileInsecure(f"key file {path} is owned by uid {info.st_uid}; it must belong to root")
        if info.st_mode & 0o077:
            raise KeyFileInsecure(
                f"key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; group and other must have no "
                f"access: run `chmod 600 {path}`"
            )
        raw = os.read(fd, _MAX_KEY_FILE_BYTES)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise KeyFileInsecure(f"key file {path} does not hold a nodelogs key") from exc
    parsed = parse_key(text)
    if not isinstance(parsed, Success):
        raise KeyFileInsecure(f"key file {path} does not hold a well-formed nodelogs key ({parsed.reason})")
    return NodeKey(key_id=parsed.value.key_id, secret=parsed.value.key)


def read_identity(key_dir: Path) -> tuple[str, str] | None:
    """Return the instance identity document and its signature beside the key, or None if absent.

    Either file missing, empty, oversized or not text means "no document": the exchange goes
    without one (keysvc refuses it only when the cluster requires documents).
    """
    try:
        parts = [
            (key_dir / name).read_bytes()[: _MAX_IDENTITY_BYTES + 1]
            for name in (IDENTITY_DOCUMENT_FILE, IDENTITY_SIGNATURE_FILE)
        ]
        document, signature = (part.decode("utf-8") for part in parts)
    except (OSError, UnicodeDecodeError):
        return None
    if not document.strip() or not signature.strip() or max(len(p) for p in parts) > _MAX_IDENTITY_BYTES:
        return None
    return document, signature.strip()


def remove_key(path: Path) -> bool:
    """Delete the key file; return whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def mark_finished(state_dir: Path, key_id: str, reason: str, at: float) -> None:
    """Record durably that this key is done (``expired`` or ``refused``)."""
    body = json.dumps({"version": 1, "key_id": key_id, "reason": reason, "at": at}, sort_keys=True)
    atomic_write(state_dir / FINISHED_FILE, body.encode())


def finished_reason(state_dir: Path, key_id: str | None) -> str | None:
    """Return why the key was finished, or ``None`` when it was not (or the marker is for another key).

    With ``key_id=None`` (no key file) any marker counts. An unreadable marker counts as finished: the
    safe reading of a damaged "stop" record is "stop".
    """
    path = state_dir / FINISHED_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return f"unreadable marker {path}"
    if not isinstance(data, dict):
        return f"unreadable marker {path}"
    if key_id is not None and data.get("key_id") != key_id:
        return None
    return str(data.get("reason", "finished"))
