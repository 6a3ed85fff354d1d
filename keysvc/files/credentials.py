"""Provisioner and admin credentials: bearer tokens, stored only as hashes, with scopes.

These are separate from ingest keys, with their own wire format (version 1)::

    nlt1_<credential id: 16>_<secret: 32>        (lowercase base32, 160-bit secret)

The credentials file is TOML, written atomically with mode 0600 by ``keysvc credentials``::

    [[credential]]
    id = "q3bx4kqgfr2e6t5a"
    name = "provisioner"
    scopes = ["nodes:add", "nodes:terminate"]
    sha256 = "<hex of the domain-separated SHA-256 of the whole token>"
    created_at = "2026-11-28T08:00:00Z"

:class:`CredentialFile` re-reads the file whenever it changes (inode, size or mtime), so tokens
are rotated without a restart: create the new one, switch the client over, delete the old one. A
file that fails to parse leaves the last good set in force and is logged. Comparisons are constant
time, and an unknown id costs the same hash as a known one.
"""

from __future__ import annotations

import hmac
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from keysvc.core.tokenformat import CREDENTIAL_ID, PREFIX, TOKEN, mint_token, token_hash
from keysvc.errors import ConfigError, InvalidInput, NotFound
from keysvc.files.private_files import write_private
from keysvc.wire.results import Failure, Reason, Success

SCOPES = ("nodes:add", "nodes:terminate", "admin:read", "admin:revoke")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DUMMY_HASH = bytes(32)

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Credential:
    """A provisioner or admin credential as stored: no secret, only its hash."""

    id: str
    name: str
    scopes: frozenset[str]
    sha256: bytes
    created_at: str

    def allows(self, scope: str) -> bool:
        """Return True when this credential carries ``scope``."""
        return scope in self.scopes


def parse_credentials(text: str, origin: str = "credentials") -> dict[str, Credential]:
    """Parse a credentials file; raises :class:`ConfigError` on anything unexpected."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from exc
    if set(raw) - {"credential"}:
        raise ConfigError(f"{origin}: only [[credential]] tables are allowed")
    tables = raw.get("credential", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{origin}: credential must be an array of tables")
    found: dict[str, Credential] = {}
    for index, table in enumerate(tables):
        where = f"{origin}: credential #{index + 1}"
        if not isinstance(table, dict) or set(table) != {"id", "name", "scopes", "sha256", "created_at"}:
            raise ConfigError(f"{where} must have exactly id, name, scopes, sha256, created_at")
        cid, name, scopes, digest = table["id"], table["name"], table["scopes"], table["sha256"]
        if not isinstance(cid, str) or not CREDENTIAL_ID.fullmatch(cid) or cid in found:
            raise ConfigError(f"{where}: bad or duplicate id")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: bad name")
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            raise ConfigError(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"{where}: sha256 must be 64 hex digits")
        found[cid] = Credential(
            id=cid,
            name=name,
            scopes=frozenset(scopes),
            sha256=bytes.fromhex(digest),
            created_at=str(table["created_at"]),
        )
    return found


def render_credentials(credentials: Iterable[Credential]) -> str:
    """Serialize credentials as the TOML file :func:`parse_credentials` reads."""
    lines = [
        "# keysvc credentials: provisioner and admin tokens, stored only as hashes.",
        "# Managed by `keysvc credentials create|list|delete`; reloaded by `keysvc serve` on change.",
    ]
    for cred in credentials:
        scopes = ", ".join(f'"{scope}"' for scope in sorted(cred.scopes))
        lines += [
            "",
            "[[credential]]",
            f'id = "{cred.id}"',
            f'name = "{cred.name}"',
            f"scopes = [{scopes}]",
            f'sha256 = "{cred.sha256.hex()}"',
            f'created_at = "{cred.created_at}"',
        ]
    return "\n".join(lines) + "\n"


def read_credentials(path: Path) -> dict[str, Credential]:
    """Read the credentials file; a missing file holds no credentials."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"credentials file {path} is not UTF-8 text") from exc
    return parse_credentials(text, origin=str(path))


def create_credential(path: Path, *, name: str, scopes: Iterable[str], now: float) -> tuple[Credential, str]:
    """Add a credential to the file and return it with its token; the token exists nowhere else."""
    wanted = sorted(set(scopes))
    if not _NAME.fullmatch(name):
        raise InvalidInput("credential name must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'")
    if not wanted or any(scope not in SCOPES for scope in wanted):
        raise InvalidInput(f"scopes must be one or more of: {', '.join(SCOPES)}")
    existing = read_credentials(path)
    credential_id, token = mint_token()
    created = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cred = Credential(credential_id, name, frozenset(wanted), token_hash(token), created)
    write_private(path, render_credentials([*existing.values(), cred]).encode("utf-8"))
    return cred, token


def delete_credential(path: Path, credential_id: str) -> Credential:
    """Remove one credential from the file; a running server stops accepting it at its next request."""
    existing = read_credentials(path)
    if credential_id not in existing:
        raise NotFound(f"no credential with id {credential_id[:16]!r}")
    removed = existing.pop(credential_id)
    write_private(path, render_credentials(existing.values()).encode("utf-8"))
    return removed


def looks_like_token(presented: str) -> bool:
    """Return True when ``presented`` has the shape of a provisioner or admin token."""
    return presented.startswith(PREFIX)


class CredentialFile:
    """The live set of credentials, re-read whenever the file changes. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._credentials: Mapping[str, Credential] = {}

    def _current(self) -> Mapping[str, Credential]:
        try:
            st = self._path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                problem = ""
                try:
                    self._credentials = read_credentials(self._path) if stamp is not None else {}
                except ConfigError as exc:
                    problem = str(exc)
                self._stamp = stamp
                if problem:
                    log.error("credentials_reload_failed", path=str(self._path), error=problem)
                else:
                    log.info("credentials_loaded", path=str(self._path), count=len(self._credentials))
            return self._credentials

    def authenticate(self, presented: str, scope: str) -> Success[Credential] | Failure:
        """Check a bearer token and its scope; the failure reason is for the audit log only."""
        credentials = self._current()
        match = TOKEN.fullmatch(presented)
        if match is None:
            return Failure(Reason.MALFORMED)
        cred = credentials.get(match["id"])
        stored = cred.sha256 if cred is not None else _DUMMY_HASH
        if not hmac.compare_digest(token_hash(presented), stored) or cred is None:
            return Failure(Reason.UNKNOWN if cred is None else Reason.HASH_MISMATCH)
        if not cred.allows(scope):
            return Failure(Reason.OUT_OF_SCOPE, f"credential {cred.name!r} lacks scope {scope}")
        return Success(cred)
