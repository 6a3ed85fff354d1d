"""The ports the service decides over: small Protocols that adapters implement without importing them.

An adapter satisfies a port structurally; it imports only :mod:`keysvc.core` value types
(:class:`~keysvc.core.models.KeyRecord`, :class:`~keysvc.core.models.KeyFilter`, ...), never this
module, so imports point down: entry points -> service -> (ports) <- adapters -> core.

A store hands out two kinds of unit of work:

- ``transaction()``: a write transaction. Everything done through it commits together or not at all;
  this is how a state change and its audit record are made atomic. Opening one serializes audit appends
  (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``lock_audit_head`` locks the head row).
- ``read()``: a consistent read-only snapshot.

Every store method raises :class:`~keysvc.errors.StoreError` (or its subclasses) for database failures,
and :class:`~keysvc.errors.Conflict` when a uniqueness rule of the schema is broken, such as a second
live key for one node.

The implementations: :mod:`keysvc.store.sqlite`, :mod:`keysvc.store.postgres` and the in-memory
:mod:`keysvc.store.memory` (for the service's own unit tests); :class:`~keysvc.gcs.url_signing.GcsUrlSigner`;
:class:`~keysvc.files.audit_signing.Ed25519Signer`; :class:`~keysvc.core.clock.SystemClock`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol

from keysvc.core.auditchain import ChainHead, Signer
from keysvc.core.clock import Clock
from keysvc.core.identity import IdentityDocument
from keysvc.core.models import AuditFilter, AuditRecord, KeyFilter, KeyRecord, KeyState
from keysvc.wire.results import Failure, Success

__all__ = ["Clock", "IdentityVerifier", "Reader", "Signer", "Store", "Transaction", "UrlSigner"]


class Reader(Protocol):
    """Queries available inside both read snapshots and write transactions."""

    def get_key(self, key_id: str) -> KeyRecord | None:
        """Return the key with this id, or None."""
        ...

    def find_keys(self, where: KeyFilter) -> list[KeyRecord]:
        """Return matching keys, oldest issued first."""
        ...

    def audit_records(self, where: AuditFilter) -> list[AuditRecord]:
        """Return matching audit records in seq order."""
        ...

    def iter_audit(self) -> Iterator[AuditRecord]:
        """Yield every audit record in seq order (for verification and export)."""
        ...

    def audit_head(self) -> ChainHead | None:
        """Return the signed chain head, or None when the chain is empty."""
        ...


class Transaction(Reader, Protocol):
    """The writes the service needs, all inside one database transaction."""

    def insert_key(self, record: KeyRecord) -> None:
        """Store a new key; :class:`Conflict` if the node already holds a live key."""
        ...

    def end_key(self, key_id: str, state: KeyState, *, at: float, reason: str) -> bool:
        """Move a live key to ``state`` and delete its hash; False (and no change) if it was not live."""
        ...

    def bind_instance(self, key_id: str, instance: str) -> bool:
        """Bind a live key with no instance yet to ``instance``; False (and no change) otherwise."""
        ...

    def record_use(self, key_id: str, *, at: float, source: str) -> tuple[int, bool]:
        """Count one use of a live key; return the new use count and whether ``source`` is new for it."""
        ...

    def exchange(self, key_id: str, *, nonce_hash: bytes, session_hash: bytes, at: float) -> bool:
        """Install a session on a live key never exchanged or exchanged with this nonce; else False."""
        ...

    def record_replay(self, key_id: str, *, at: float) -> int:
        """Count one refused replay of a key; return the new count."""
        ...

    def expired_live_keys(self, now: float) -> list[KeyRecord]:
        """Return live keys whose ``expires_at`` is at or before ``now``."""
        ...

    def lock_audit_head(self) -> ChainHead | None:
        """Lock the chain head against concurrent appenders until commit, and return it."""
        ...

    def append_audit(self, record: AuditRecord) -> None:
        """Store a sealed audit record."""
        ...

    def write_audit_head(self, head: ChainHead) -> None:
        """Replace the signed chain head."""
        ...


class Store(Protocol):
    """A state store."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Open a write transaction; it commits when the block exits normally, else rolls back."""
        ...

    def read(self) -> AbstractContextManager[Reader]:
        """Open a consistent read-only snapshot."""
        ...

    def migrate(self) -> int:
        """Bring the schema up to date; return the schema version now in place."""
        ...

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` when the database cannot be reached."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...


class UrlSigner(Protocol):
    """Anything that can produce a signed PUT URL for one object."""

    def sign_put(
        self, *, bucket: str, object_name: str, headers: Mapping[str, str], signed_at: int, expires_in: int
    ) -> str:
        """Return a URL that allows one PUT of ``object_name`` with exactly ``headers``."""
        ...

    def check_ready(self) -> None:
        """Raise :class:`SigningError` when no URL can be signed right now."""
        ...


class IdentityVerifier(Protocol):
    """Verifies an identity document's signature (:class:`~keysvc.aws.identity.TrustDirectory`)."""

    def verify(self, document: bytes, signature: str) -> Success[IdentityDocument] | Failure:
        """Return the document once its signature verified, or why it did not."""
        ...


class KeyObserver(Protocol):
    """Told about every revocation and expiry the key service commits (metrics listen here)."""

    def revoked(self, channel: str, count: int) -> None:
        """``count`` keys were revoked through ``channel`` (superseded, terminated, admin, events, ...)."""
        ...

    def expired(self, count: int) -> None:
        """``count`` keys were expired by a sweep."""
        ...
