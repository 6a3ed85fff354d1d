"""The audit trail: every decision the service makes becomes a hash-chained, signed record.

The key and ingest services append through :meth:`AuditTrail.append` inside their own store
transaction, so a state change and its record commit together. Operators read, verify and
export through the other methods. Nothing that is shaped like a key ever enters a record:
caller-supplied text is scrubbed (:func:`scrub`) before it is sealed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from keysvc.core import auditchain, ids
from keysvc.core.auditchain import ChainHead, VerifyReport
from keysvc.core.models import AuditEvent, AuditFilter, AuditRecord, EventType, KeyRecord, Scope
from keysvc.errors import ConfigError, InvalidInput
from keysvc.service.ports import Clock, Signer, Store, Transaction
from keysvc.wire import keyformat

MAX_TEXT = 256
MAX_SOURCE = 128


def scrub(value: Any) -> Any:
    """Replace anything shaped like a key in caller-supplied audit detail: a secret never enters a record."""
    if isinstance(value, str):
        return keyformat.KEY_PATTERN.sub("[REDACTED]", value)
    if isinstance(value, Mapping):
        return {str(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)


def key_event(kind: EventType, rec: KeyRecord, at: float, **fields: Any) -> AuditEvent:
    """An event about one key, carrying the key's id, cluster, node, instance and region."""
    return AuditEvent(
        at=at,
        event=kind,
        key_id=rec.key_id,
        cluster=rec.cluster,
        node=rec.node,
        instance=rec.instance,
        region=rec.region,
        **fields,
    )


def refusal_event(
    reason: str,
    now: float,
    *,
    source: str | None,
    rec: KeyRecord | None = None,
    key_id: str | None = None,
    wanted: Scope | None = None,
    actor: str | None = None,
    detail: Mapping[str, Any] | None = None,
    check: str = "",
) -> AuditEvent:
    """A ``refused`` event with its precise reason, what was wanted, and (scrubbed) detail."""
    info: dict[str, Any] = dict(detail) if detail else {}
    if check:
        info["check"] = check
    if wanted is not None:
        info["wanted"] = {
            "cluster": wanted.cluster,
            "node": wanted.node,
            "region": wanted.region,
            "action": wanted.action,
        }
    return AuditEvent(
        at=now,
        event=EventType.REFUSED,
        key_id=rec.key_id if rec else key_id,
        cluster=rec.cluster if rec else None,
        node=rec.node if rec else None,
        instance=rec.instance if rec else None,
        region=rec.region if rec else None,
        actor=actor,
        source=source,
        reason=reason,
        detail=scrub(info),
    )


def checked_key_id(key_id: str) -> str:
    """Return a well-formed key id, else raise :class:`InvalidInput`."""
    if not isinstance(key_id, str) or not keyformat.KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidInput("invalid key id: expected 16 characters of a-z and 2-7")
    return key_id


class AuditTrail:
    """Appends to, reads and verifies the one audit chain of a store."""

    def __init__(self, store: Store, signer: Signer, clock: Clock) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._trusted = {signer.signer_id: auditchain.load_public_key(signer.public_key_pem())}

    def append(self, tx: Transaction, event: AuditEvent) -> AuditRecord:
        """Seal ``event`` onto the chain inside ``tx``, and sign the new head."""
        record = auditchain.seal(event, tx.lock_audit_head(), self._signer)
        tx.append_audit(record)
        tx.write_audit_head(auditchain.sign_head(record, self._signer))
        return record

    def record_refusal(
        self,
        *,
        reason: str,
        source: str | None,
        actor: str | None = None,
        key_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit a refusal an entry point found itself (wrong endpoint, bad token, rate limit).

        ``reason`` should be a :class:`~keysvc.wire.results.Reason` value; ``detail`` is scrubbed of
        anything shaped like a key before it is recorded.
        """
        now = self._clock.now()
        kid = key_id if key_id is not None and keyformat.KEY_ID_PATTERN.fullmatch(key_id) else None
        with self._store.transaction() as tx:
            rec = tx.get_key(kid) if kid is not None else None
            self.append(
                tx,
                refusal_event(
                    scrub(str(reason)[:MAX_TEXT]),
                    now,
                    source=None if source is None else str(source)[:MAX_SOURCE],
                    rec=rec,
                    key_id=kid,
                    actor=None if actor is None else scrub(str(actor)[:MAX_TEXT]),
                    detail=detail,
                ),
            )

    def records(
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
        """Return audit records in seq order; ``limit`` keeps the most recent ones."""
        if limit is not None and limit < 1:
            raise InvalidInput("limit must be positive")
        where = AuditFilter(
            since=since,
            until=until,
            cluster=ids.cluster_id(cluster) if cluster is not None else None,
            node=ids.node_id(node) if node is not None else None,
            event=EventType(event) if event is not None else None,
            key_id=checked_key_id(key_id) if key_id is not None else None,
            limit=limit,
        )
        with self._store.read() as reader:
            return reader.audit_records(where)

    def snapshot(self) -> tuple[list[AuditRecord], ChainHead | None]:
        """Return every record and the signed head, from one consistent snapshot (for export)."""
        with self._store.read() as reader:
            return list(reader.iter_audit()), reader.audit_head()

    def verify(self, *, public_keys: Iterable[str] | None = None) -> VerifyReport:
        """Verify the whole chain; raise :class:`AuditIntegrityError` naming the first bad record.

        By default the service's own signing key is trusted; ``public_keys`` (PEM) pins other keys
        instead, such as one exported earlier, so a swapped key file cannot vouch for itself.
        """
        trusted = self._trusted
        if public_keys is not None:
            loaded = [auditchain.load_public_key(pem) for pem in public_keys]
            trusted = {auditchain.fingerprint(key): key for key in loaded}
        records, head = self.snapshot()
        return auditchain.verify_chain(records, head, trusted).raise_for_problem()

    def public_keys(self) -> dict[str, str]:
        """Signer id -> PEM public key, for exports and third-party verifiers."""
        return {self._signer.signer_id: self._signer.public_key_pem()}

    def check_signer(self) -> None:
        """Raise :class:`ConfigError` when the chain's head was signed by a key other than ours.

        Replicas must share one audit signing key; a replica that generated its own would append
        records no other replica, and no verifier pinned to the shared key, can verify.
        """
        with self._store.read() as reader:
            head = reader.audit_head()
        if head is not None and head.signer != self._signer.signer_id:
            raise ConfigError(
                f"the audit chain is signed by key {head.signer} but this process holds key "
                f"{self._signer.signer_id}; give every replica the same audit signing key"
            )
