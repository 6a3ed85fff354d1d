"""The records keysvc keeps and passes around. Plain frozen data; no behaviour, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class KeyState(enum.StrEnum):
    """Where a key is in its life. Values are stable: they are stored and shown."""

    LIVE = "live"
    REVOKED = "revoked"
    EXPIRED = "expired"


class EventType(enum.StrEnum):
    """The kinds of audit record. Values are stable: they are hashed into the chain."""

    ISSUED = "issued"
    USED = "used"
    REFUSED = "refused"
    REVOKED = "revoked"
    EXPIRED = "expired"
    BOUND = "bound"
    EXCHANGED = "exchanged"


INGEST = "ingest"
"""The only action an ingest key can ever perform."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a key may do, fixed at minting: ingest logs for one node, in one region."""

    cluster: str
    node: str
    region: str
    action: str = INGEST


@dataclass(frozen=True, slots=True)
class Region:
    """One region: its bucket, the object prefix in it, and the keysvc URL its agents use."""

    name: str
    bucket: str
    prefix: str = "nodelogs"
    endpoint: str = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which keys to list; ``None`` matches anything."""

    cluster: str | None = None
    node: str | None = None
    instance: str | None = None
    operation_id: str | None = None
    state: KeyState | None = None
    #: True: only keys that saw a replayed exchange or key use; False: only keys that did not.
    replayed: bool | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit records to list; ``None`` matches anything. ``limit`` keeps the most recent records."""

    since: float | None = None
    until: float | None = None
    cluster: str | None = None
    node: str | None = None
    event: EventType | None = None
    key_id: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class AddNode:
    """An AddNode as the provisioner describes it.

    ``instance`` is None when the provisioner does not know the EC2 instance id yet (it needs the
    user data for RunInstances first); it binds the instance afterwards with ``bind_instance``.
    """

    cluster: str
    node: str
    instance: str | None
    region: str
    operation_id: str
    started_at: float


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything known about a key except its secret.

    ``key_hash`` is None once revoked or expired; ``instance`` is None until the node's EC2 instance is bound.
    The exchange (see DESIGN.md, "Exchange, once"): ``nonce_hash`` is set by the first exchange and
    never changes; ``session_hash`` is the current session's (None before the exchange and once the
    key ended); ``exchanges`` counts exchanges (more than one: the same agent came back after a crash);
    ``replays`` counts refused uses of the exchanged key by anyone else.
    """

    key_id: str
    cluster: str
    node: str
    instance: str | None
    region: str
    operation_id: str
    started_at: float
    issued_at: float
    expires_at: float
    state: KeyState
    key_hash: bytes | None = field(default=None, repr=False)
    ended_at: float | None = None
    end_reason: str | None = None
    uses: int = 0
    last_used_at: float | None = None
    nonce_hash: bytes | None = field(default=None, repr=False)
    session_hash: bytes | None = field(default=None, repr=False)
    exchanged_at: float | None = None
    exchanges: int = 0
    replays: int = 0
    last_replay_at: float | None = None

    @property
    def exchanged(self) -> bool:
        """Whether the key was exchanged for a session (after which the key itself is spent)."""
        return self.nonce_hash is not None

    @property
    def scope(self) -> Scope:
        """The key's fixed scope."""
        return Scope(cluster=self.cluster, node=self.node, region=self.region)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """The answer to an AddNode. ``key`` is the plaintext: shown exactly once, never stored."""

    key: str = field(repr=False)
    record: KeyRecord
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """An audit event before it is chained and signed. Never holds a secret."""

    at: float
    event: EventType
    key_id: str | None = None
    cluster: str | None = None
    node: str | None = None
    instance: str | None = None
    region: str | None = None
    actor: str | None = None
    source: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit event as stored: numbered, chained to its predecessor and signed."""

    seq: int
    event: AuditEvent
    prev_hash: bytes
    record_hash: bytes
    signature: bytes
    signer: str
