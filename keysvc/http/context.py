"""What every route needs: the service, the settings, the signer, the guard, the clock, the metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from keysvc.clock import Clock
from keysvc.config import Settings
from keysvc.http.auth import Guard
from keysvc.metrics import Metrics
from keysvc.models import AddNode, AuditRecord, EventType, IssuedKey, KeyRecord, KeyState, Scope
from keysvc.url_signing import UrlSigner


class KeyServiceApi(Protocol):
    """The service operations the HTTP layer calls (implemented by :class:`keysvc.service.KeyService`)."""

    def add_node(self, request: AddNode, *, actor: str) -> IssuedKey:
        """Mint a key for a node."""
        ...

    def authenticate_ingest(self, presented: str, *, wanted: Scope | None, source: str) -> KeyRecord:
        """Check an ingest key."""
        ...

    def record_refusal(
        self,
        *,
        reason: str,
        source: str | None,
        actor: str | None = None,
        key_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit a refusal the HTTP layer detected."""
        ...

    def bind_instance(self, *, cluster: str, node: str, instance: str, actor: str) -> KeyRecord:
        """Bind the node's live key to its EC2 instance."""
        ...

    def revoke(
        self,
        *,
        reason: str,
        actor: str,
        key_id: str | None = None,
        cluster: str | None = None,
        node: str | None = None,
        instance: str | None = None,
    ) -> list[str]:
        """Revoke by one selector."""
        ...

    def get_key(self, key_id: str) -> KeyRecord:
        """Return one key."""
        ...

    def list_keys(
        self, *, cluster: str | None = None, node: str | None = None, state: KeyState | None = None
    ) -> list[KeyRecord]:
        """List keys."""
        ...

    def audit_log(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        cluster: str | None = None,
        node: str | None = None,
        event: EventType | None = None,
        key_id: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Return audit records."""
        ...

    def verify_audit(self) -> Any:
        """Verify the audit chain."""
        ...

    def check_ready(self) -> None:
        """Raise when the store is unreachable."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """The collaborators of every route, fixed when the app is built."""

    service: KeyServiceApi
    settings: Settings
    signer: UrlSigner
    guard: Guard
    clock: Clock
    metrics: Metrics
