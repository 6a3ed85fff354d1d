"""The key service: mint, check, revoke and expire ingest keys, with every change audited.

Policy lives here; the database lives behind :class:`~keysvc.store.Store`, the time behind
:class:`~keysvc.clock.Clock`, signatures behind :class:`~keysvc.auditchain.Signer`. Every state change
and its audit record commit in one store transaction, so no key exists without its ``issued`` record
and no revocation without its ``revoked`` record.

AddNode retries: the plaintext is never stored, so a retry (same operation id, same parameters)
mints a fresh key and supersedes the earlier one. The node ends up with exactly one live key, the one
the latest answer carried. The same operation id with different parameters is a :class:`Conflict`;
an AddNode without an instance and its retry with one (or the reverse) differ, and so does a retry
without an instance once the first key was bound: that node already runs with the first key.

Binding the instance: EC2 assigns the instance id only when RunInstances returns, and RunInstances
already needs the user data that carries the key. So AddNode may leave the instance out, and the
provisioner binds it afterwards (:meth:`KeyService.bind_instance`). Until then a termination event,
which names only the instance, finds no key; the key still expires within the hour.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, NoReturn

import structlog

from keysvc import auditchain, expiry, ids, keyformat, scope
from keysvc.auditchain import Signer, VerifyReport
from keysvc.checks import Failure, Reason
from keysvc.clock import Clock
from keysvc.errors import ConfigError, Conflict, InvalidInput, KeyEnded, NotFound, Refused
from keysvc.models import (
    AddNode,
    AuditEvent,
    AuditRecord,
    EventType,
    IssuedKey,
    KeyRecord,
    KeyState,
    Scope,
)
from keysvc.store import AuditFilter, KeyFilter, Store, Transaction

log = structlog.get_logger()

SUPERSEDED = "superseded"
EXPIRED_REASON = "expired"
MAX_TEXT = 256
MAX_SOURCE = 128


def _text(field: str, value: object, max_len: int = MAX_TEXT) -> str:
    """Accept a short printable string (a reason, an actor), else raise :class:`InvalidInput`."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len or not value.isprintable():
        raise InvalidInput(f"invalid {field}: expected 1-{max_len} printable characters")
    if keyformat.looks_like_key(value):
        raise InvalidInput(f"invalid {field}: it contains something shaped like a key")
    return value


def _scrub(value: Any) -> Any:
    """Replace anything shaped like a key in caller-supplied audit detail: a secret never enters a record."""
    if isinstance(value, str):
        return keyformat.KEY_PATTERN.sub("[REDACTED]", value)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)


class KeyService:
    """Per-node ingest keys and their audit chain."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        clock: Clock,
        *,
        key_ttl_seconds: int = expiry.MAX_TTL_SECONDS,
        max_start_skew_seconds: float = 300.0,
    ) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._ttl = expiry.checked_ttl(key_ttl_seconds)
        self._skew = max_start_skew_seconds
        self._trusted = {signer.signer_id: auditchain.load_public_key(signer.public_key_pem())}

    @property
    def key_ttl_seconds(self) -> int:
        """The lifetime given to every key minted here."""
        return self._ttl

    def close(self) -> None:
        """Release the store."""
        self._store.close()

    # -- audit ----------------------------------------------------------------------------------

    def _append(self, tx: Transaction, event: AuditEvent) -> AuditRecord:
        record = auditchain.seal(event, tx.lock_audit_head(), self._signer)
        tx.append_audit(record)
        tx.write_audit_head(auditchain.sign_head(record, self._signer))
        return record

    @staticmethod
    def _key_event(kind: EventType, rec: KeyRecord, at: float, **fields: Any) -> AuditEvent:
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

    def _end(
        self, tx: Transaction, rec: KeyRecord, now: float, *, reason: str, actor: str | None
    ) -> KeyState | None:
        """End a live key: expired if past its expiry, else revoked. Returns the new state if changed."""
        if expiry.is_expired(now, rec.expires_at):
            if tx.end_key(rec.key_id, KeyState.EXPIRED, at=rec.expires_at, reason=EXPIRED_REASON):
                self._append(tx, self._key_event(EventType.EXPIRED, rec, now, reason=EXPIRED_REASON))
                return KeyState.EXPIRED
            return None
        if tx.end_key(rec.key_id, KeyState.REVOKED, at=now, reason=reason):
            self._append(tx, self._key_event(EventType.REVOKED, rec, now, actor=actor, reason=reason))
            return KeyState.REVOKED
        return None

    # -- minting --------------------------------------------------------------------------------

    def add_node(self, request: AddNode, *, actor: str) -> IssuedKey:
        """Mint the node's key, superseding any live key it holds; the plaintext is returned once."""
        cluster = ids.cluster_id(request.cluster)
        node = ids.node_id(request.node)
        instance = ids.instance_id(request.instance) if request.instance is not None else None
        region = ids.region(request.region)
        operation = ids.operation_id(request.operation_id)
        actor = _text("actor", actor)
        started = request.started_at
        if isinstance(started, bool) or not isinstance(started, int | float) or not math.isfinite(started):
            raise InvalidInput("invalid started_at: expected seconds since the epoch")
        started = float(started)
        now = self._clock.now()
        expires = expiry.expires_at(started, self._ttl)
        if expiry.is_expired(now, expires):
            raise InvalidInput("invalid started_at: the AddNode began too long ago, its key would be expired")
        if started - now > self._skew:
            raise InvalidInput("invalid started_at: the AddNode begins too far in the future")
        params = (cluster, node, instance, region, started)
        with self._store.transaction() as tx:
            earlier = tx.find_keys(KeyFilter(operation_id=operation))
            for prior in earlier:
                if (prior.cluster, prior.node, prior.instance, prior.region, prior.started_at) != params:
                    raise Conflict("operation id was already used for a different AddNode")
            minted = keyformat.mint()
            superseded: list[str] = []
            for live in tx.find_keys(KeyFilter(cluster=cluster, node=node, state=KeyState.LIVE)):
                if self._end(tx, live, now, reason=SUPERSEDED, actor=actor) is KeyState.REVOKED:
                    superseded.append(live.key_id)
            record = KeyRecord(
                key_id=minted.key_id,
                cluster=cluster,
                node=node,
                instance=instance,
                region=region,
                operation_id=operation,
                started_at=started,
                issued_at=now,
                expires_at=expires,
                state=KeyState.LIVE,
                key_hash=keyformat.key_hash(minted.key),
            )
            tx.insert_key(record)
            detail: dict[str, Any] = {
                "operation_id": operation,
                "expires_at": expires,
                "retry": bool(earlier),
            }
            if superseded:
                detail["superseded"] = superseded
            self._append(tx, self._key_event(EventType.ISSUED, record, now, actor=actor, detail=detail))
        log.info("key_issued", key_id=record.key_id, cluster=cluster, node=node, superseded=superseded)
        return IssuedKey(key=minted.key, record=record, superseded=tuple(superseded))

    def bind_instance(self, *, cluster: str, node: str, instance: str, actor: str) -> KeyRecord:
        """Bind the EC2 instance to the node's live key, so termination events for it revoke the key.

        Idempotent: binding the instance already bound returns the key and audits nothing again.
        :class:`NotFound` when the node has no live key, :class:`Conflict` when its key is bound to
        another instance or the instance is bound to another node's live key.
        """
        cluster = ids.cluster_id(cluster)
        node = ids.node_id(node)
        instance = ids.instance_id(instance)
        actor = _text("actor", actor)
        now = self._clock.now()
        with self._store.transaction() as tx:
            live = [
                rec
                for rec in tx.find_keys(KeyFilter(cluster=cluster, node=node, state=KeyState.LIVE))
                if not expiry.is_expired(now, rec.expires_at)
            ]
            if not live:
                raise NotFound(f"no live key for node {node} of cluster {cluster}")
            rec = live[-1]
            if rec.instance == instance:
                return rec
            if rec.instance is not None:
                raise Conflict("the node's key is already bound to another instance")
            if tx.find_keys(KeyFilter(instance=instance, state=KeyState.LIVE)):
                raise Conflict("the instance is already bound to another node's live key")
            if not tx.bind_instance(rec.key_id, instance):
                raise Conflict("the key changed during the request")
            bound = replace(rec, instance=instance)
            self._append(tx, self._key_event(EventType.BOUND, bound, now, actor=actor))
        log.info("key_bound", key_id=bound.key_id, cluster=cluster, node=node, instance=instance)
        return bound

    # -- checking -------------------------------------------------------------------------------

    def authenticate_ingest(self, presented: str, *, wanted: Scope | None, source: str) -> KeyRecord:
        """Check a presented key for ``wanted``; raise :class:`Refused` with the precise reason (audited).

        ``wanted=None`` means the caller makes no claims: the key's own record is its scope. A key
        whose hash matched but that is expired or revoked raises :class:`KeyEnded`, the one refusal
        the HTTP layer answers distinctly, because only the key's holder can provoke it.
        """
        source = str(source)[:MAX_SOURCE]
        now = self._clock.now()
        parsed = keyformat.parse(presented) if isinstance(presented, str) else Failure(Reason.MALFORMED)
        if isinstance(parsed, Failure):
            self._refuse(parsed, source=source, wanted=wanted, now=now)
        key_id = parsed.value.key_id
        with self._store.transaction() as tx:
            rec = tx.get_key(key_id)
            failure = self._check(rec, parsed.value.key, wanted, now)
            if failure is None and rec is not None:
                uses, first_from_source = tx.record_use(rec.key_id, at=now, source=source)
                if first_from_source:
                    self._append(
                        tx, self._key_event(EventType.USED, rec, now, source=source, detail={"uses": uses})
                    )
                return replace(rec, uses=uses, last_used_at=now)
            if failure is None:  # unreachable: _check fails whenever rec is None
                failure = Failure(Reason.UNKNOWN)
            self._append(
                tx,
                self._refusal_event(
                    failure.reason.value,
                    now,
                    source=source,
                    rec=rec,
                    key_id=key_id,
                    wanted=wanted,
                    check=failure.detail,
                ),
            )
        log.info("key_refused", key_id=key_id, reason=failure.reason.value, source=source)
        # _check answers EXPIRED/REVOKED for a record with a hash only after that hash matched.
        proved = rec is not None and rec.key_hash is not None
        if proved and failure.reason in (Reason.EXPIRED, Reason.REVOKED):
            raise KeyEnded(failure.reason.value)
        raise Refused(failure.reason.value)

    @staticmethod
    def _check(rec: KeyRecord | None, key: str, wanted: Scope | None, now: float) -> Failure | None:
        if rec is None:
            return Failure(Reason.UNKNOWN)
        if rec.key_hash is None:
            return Failure(Reason.REVOKED if rec.state is KeyState.REVOKED else Reason.EXPIRED)
        if not keyformat.hash_matches(key, rec.key_hash):
            return Failure(Reason.HASH_MISMATCH)
        if expiry.is_expired(now, rec.expires_at) or rec.state is KeyState.EXPIRED:
            return Failure(Reason.EXPIRED)
        if rec.state is KeyState.REVOKED:
            return Failure(Reason.REVOKED)
        checked = scope.check_scope(rec.scope, rec.scope if wanted is None else wanted)
        return checked if isinstance(checked, Failure) else None

    @staticmethod
    def _refusal_event(
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
            detail=_scrub(info),
        )

    def _refuse(self, failure: Failure, *, source: str, wanted: Scope | None, now: float) -> NoReturn:
        with self._store.transaction() as tx:
            self._append(
                tx,
                self._refusal_event(
                    failure.reason.value, now, source=source, wanted=wanted, check=failure.detail
                ),
            )
        log.info("key_refused", reason=failure.reason.value, source=source)
        raise Refused(failure.reason.value)

    def record_refusal(
        self,
        *,
        reason: str,
        source: str | None,
        actor: str | None = None,
        key_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit a refusal the HTTP layer found itself (wrong endpoint, bad token, rate limit).

        ``reason`` should be a :class:`~keysvc.checks.Reason` value; ``detail`` is scrubbed of anything
        shaped like a key before it is recorded.
        """
        now = self._clock.now()
        kid = key_id if key_id is not None and keyformat.KEY_ID_PATTERN.fullmatch(key_id) else None
        with self._store.transaction() as tx:
            rec = tx.get_key(kid) if kid is not None else None
            self._append(
                tx,
                self._refusal_event(
                    _scrub(str(reason)[:MAX_TEXT]),
                    now,
                    source=None if source is None else str(source)[:MAX_SOURCE],
                    rec=rec,
                    key_id=kid,
                    actor=None if actor is None else _scrub(str(actor)[:MAX_TEXT]),
                    detail=detail,
                ),
            )

    # -- ending ---------------------------------------------------------------------------------

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
        """Revoke by exactly one selector; idempotent. Returns the ids this call revoked.

        The selectors are a key id, an instance, a cluster, a node (in every cluster), or a node of one
        cluster (``cluster`` and ``node`` together).
        """
        selectors = [
            name
            for name, value in (
                ("key_id", key_id),
                ("cluster/node", cluster if cluster is not None else node),
                ("instance", instance),
            )
            if value is not None
        ]
        if len(selectors) != 1:
            raise InvalidInput(
                "revoke needs exactly one of key_id, cluster (optionally with node), node, instance"
            )
        reason = _text("reason", reason)
        actor = _text("actor", actor)
        now = self._clock.now()
        revoked: list[str] = []
        with self._store.transaction() as tx:
            if key_id is not None:
                rec = tx.get_key(self._key_id(key_id))
                if rec is None:
                    raise NotFound(f"no key {key_id}")
                targets = [rec] if rec.state is KeyState.LIVE else []
            else:
                where = KeyFilter(
                    cluster=ids.cluster_id(cluster) if cluster is not None else None,
                    node=ids.node_id(node) if node is not None else None,
                    instance=ids.instance_id(instance) if instance is not None else None,
                    state=KeyState.LIVE,
                )
                targets = tx.find_keys(where)
            for rec in targets:
                if self._end(tx, rec, now, reason=reason, actor=actor) is KeyState.REVOKED:
                    revoked.append(rec.key_id)
        if revoked:
            log.info("keys_revoked", key_ids=revoked, reason=reason, actor=actor)
        return revoked

    def sweep(self) -> list[str]:
        """Expire every live key past its expiry: delete its hash and audit it once."""
        now = self._clock.now()
        expired: list[str] = []
        with self._store.transaction() as tx:
            for rec in tx.expired_live_keys(now):
                if tx.end_key(rec.key_id, KeyState.EXPIRED, at=rec.expires_at, reason=EXPIRED_REASON):
                    self._append(tx, self._key_event(EventType.EXPIRED, rec, now, reason=EXPIRED_REASON))
                    expired.append(rec.key_id)
        if expired:
            log.info("keys_expired", key_ids=expired)
        return expired

    # -- reading --------------------------------------------------------------------------------

    @staticmethod
    def _key_id(key_id: str) -> str:
        if not isinstance(key_id, str) or not keyformat.KEY_ID_PATTERN.fullmatch(key_id):
            raise InvalidInput("invalid key id: expected 16 characters of a-z and 2-7")
        return key_id

    def _effective(self, rec: KeyRecord, now: float) -> KeyRecord:
        """Report a live key past its expiry as expired, before the sweeper has run."""
        if rec.state is KeyState.LIVE and expiry.is_expired(now, rec.expires_at):
            return replace(rec, state=KeyState.EXPIRED, ended_at=rec.expires_at, end_reason=EXPIRED_REASON)
        return rec

    def get_key(self, key_id: str) -> KeyRecord:
        """Return one key; :class:`NotFound` when unknown."""
        with self._store.read() as reader:
            rec = reader.get_key(self._key_id(key_id))
        if rec is None:
            raise NotFound(f"no key {key_id}")
        return self._effective(rec, self._clock.now())

    def list_keys(
        self, *, cluster: str | None = None, node: str | None = None, state: KeyState | None = None
    ) -> list[KeyRecord]:
        """Return keys, oldest first, with their state as of now."""
        where = KeyFilter(
            cluster=ids.cluster_id(cluster) if cluster is not None else None,
            node=ids.node_id(node) if node is not None else None,
            state=KeyState.REVOKED if state is KeyState.REVOKED else None,
        )
        with self._store.read() as reader:
            found = reader.find_keys(where)
        now = self._clock.now()
        records = [self._effective(rec, now) for rec in found]
        return [rec for rec in records if state is None or rec.state is state]

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
        """Return audit records in seq order; ``limit`` keeps the most recent ones."""
        if limit is not None and limit < 1:
            raise InvalidInput("limit must be positive")
        where = AuditFilter(
            since=since,
            until=until,
            cluster=ids.cluster_id(cluster) if cluster is not None else None,
            node=ids.node_id(node) if node is not None else None,
            event=EventType(event) if event is not None else None,
            key_id=self._key_id(key_id) if key_id is not None else None,
            limit=limit,
        )
        with self._store.read() as reader:
            return reader.audit_records(where)

    def audit_snapshot(self) -> tuple[list[AuditRecord], auditchain.ChainHead | None]:
        """Return every record and the signed head, from one consistent snapshot (for export)."""
        with self._store.read() as reader:
            return list(reader.iter_audit()), reader.audit_head()

    def verify_audit(self, *, public_keys: Iterable[str] | None = None) -> VerifyReport:
        """Verify the whole chain; raise :class:`AuditIntegrityError` naming the first bad record.

        By default the service's own signing key is trusted; ``public_keys`` (PEM) pins other keys
        instead, such as one exported earlier, so a swapped key file cannot vouch for itself.
        """
        trusted = self._trusted
        if public_keys is not None:
            loaded = [auditchain.load_public_key(pem) for pem in public_keys]
            trusted = {auditchain.fingerprint(key): key for key in loaded}
        records, head = self.audit_snapshot()
        return auditchain.verify_chain(records, head, trusted).raise_for_problem()

    def audit_public_keys(self) -> dict[str, str]:
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

    def check_ready(self) -> None:
        """Raise :class:`StoreUnavailable` when the store cannot be reached."""
        self._store.ping()
