"""The agent's session: the user-data key is exchanged once for a session only this agent holds.

DESIGN.md, "Exchange, once". Two files in the state directory, both root only (0600) and written
atomically (:func:`agent.checkpoint.atomic_write`: temporary file, fsync, rename, fsync of the dir):

- ``exchange-nonce.json``: ``{"version": 1, "key_id": ..., "nonce": ...}``, written BEFORE the
  exchange is sent;
- ``session.json``: ``{"version": 1, "key_id": ..., "session": ...}``, written once keysvc answered.

Why this survives a kill -9 at any point: before the nonce is on disk nothing was sent; after it,
a restart sends the same nonce again, which keysvc takes for the same agent and answers with a new
session that supersedes the lost one; once the session is on disk it is used as it is. A copy of the
key on another machine has no nonce file, makes a fresh nonce, and is refused as a replay.

Files for another key id (the node got a new key) are ignored and overwritten. A file that cannot be
read is :class:`StateCorrupt`: the agent stops rather than guess (a new nonce would be a replay).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from agent.errors import StateCorrupt
from agent.private_files import atomic_write
from keysvc.wire import Success, is_nonce, new_nonce, parse_session

NONCE_FILE = "exchange-nonce.json"
SESSION_FILE = "session.json"
_MAX_BYTES = 4096


def _read(path: Path, key_id: str, field: str) -> str | None:
    """Return ``field`` of a state file written for ``key_id``, or None when absent or for another key."""
    try:
        raw = path.read_bytes()[:_MAX_BYTES]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateCorrupt(f"{path} cannot be read: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateCorrupt(f"{path} is not valid JSON; remove it only if no agent ever exchanged") from exc
    if not isinstance(data, dict) or not isinstance(data.get(field), str):
        raise StateCorrupt(f"{path} has no {field}")
    if data.get("key_id") != key_id:
        return None
    return str(data[field])


def _write(path: Path, key_id: str, field: str, value: str) -> None:
    body = json.dumps({"version": 1, "key_id": key_id, field: value}, sort_keys=True)
    atomic_write(path, body.encode("ascii"))


def stored_session(state_dir: Path, key_id: str) -> str | None:
    """Return the session this agent holds for ``key_id``, without ever exchanging (for ``check``)."""
    stored = _read(state_dir / SESSION_FILE, key_id, "session")
    if stored is not None and not isinstance(parse_session(stored), Success):
        raise StateCorrupt(f"{state_dir / SESSION_FILE} does not hold a well-formed session")
    return stored


class Session:
    """Holds this agent's session credential for one key, exchanging the key for it the first time.

    Thread-safe: the grant and probe clients share one instance, so only one exchange is ever in flight.
    """

    def __init__(self, state_dir: Path, key_id: str, identity: tuple[str, str] | None = None) -> None:
        #: The EC2 instance identity document and its signature, sent with the exchange when present.
        self.identity = identity
        self._dir = state_dir
        self._key_id = key_id
        self._session: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Session(key_id={self._key_id!r}, held={self._session is not None})"

    def nonce(self) -> str:
        """Return this key's exchange nonce, creating and persisting it first if there is none."""
        path = self._dir / NONCE_FILE
        found = _read(path, self._key_id, "nonce")
        if found is not None:
            if not is_nonce(found):
                raise StateCorrupt(f"{path} holds a malformed nonce")
            return found
        fresh = new_nonce()
        _write(path, self._key_id, "nonce", fresh)
        return fresh

    def bearer(self, exchange: Callable[[str], str]) -> str:
        """Return the session, from memory, from the state directory, or by ``exchange(nonce)`` once."""
        with self._lock:
            if self._session is not None:
                return self._session
            path = self._dir / SESSION_FILE
            stored = _read(path, self._key_id, "session")
            fresh = stored is None
            if stored is None:
                stored = exchange(self.nonce())
            parsed = parse_session(stored)
            if not isinstance(parsed, Success) or parsed.value.key_id != self._key_id:
                where = "keysvc's answer" if fresh else str(path)
                raise StateCorrupt(f"{where} does not hold a session for key {self._key_id}")
            if fresh:
                _write(path, self._key_id, "session", stored)
            self._session = stored
            return stored
