"""The key service: mint, bind, revoke and expire ingest keys, and render the user data that carries one.

Every decision about a key is made here, once, for every entry point (HTTP routes and CLI commands
only parse, call, and format): which regions exist, whether an AddNode is acceptable, when a key
expires, what user data may be rendered for it. The database lives behind the
:class:`~keysvc.service.ports.Store` port, the time behind a :class:`~keysvc.core.clock.Clock`, and
every state change commits in one store transaction with its audit record
(:class:`~keysvc.service.audit.AuditTrail`), so no key exists without its ``issued`` record and no
revocation without its ``revoked`` record.

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
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog

from keysvc.core import expiry, ids
from keysvc.core.models import AddNode, EventType, IssuedKey, KeyFilter, KeyRecord, KeyState, Region
from keysvc.errors import Conflict, InvalidInput, NotFound
from keysvc.service.audit import AuditTrail, checked_key_id, key_event
from keysvc.service.ports import Clock, KeyObserver, Signer, Store, Transaction
from keysvc.service.userdata import key_id_of, render_user_data
from keysvc.wire import keyformat

log = structlog.get_logger()

SUPERSEDED = "superseded"
EXPIRED_REASON = "expired"
MAX_TEXT = 256


def _text(field: str, value: object, max_len: int = MAX_TEXT) -> str:
    """Accept a short printable string (a reason, an actor), else raise :class:`InvalidInput`."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len or not value.isprintable():
        raise InvalidInput(f"invalid {field}: expected 1-{max_len} printable characters")
    if keyformat.looks_like_key(value):
        raise InvalidInput(f"invalid {field}: it contains something shaped like a key")
    return value


def _channel(actor: str) -> str:
    """A revocation's metrics channel, from its actor: ``aws:events``, ``cli:<user>``, else ``api``."""
    if actor.startswith("aws:"):
        return "events"
    if actor == "cli" or actor.startswith("cli:"):
        return "cli"
    return "api"


def _started_at(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("invalid started_at: expected seconds since the epoch")
    return float(value)


class KeyService:
    """Per-node ingest keys, for the regions this deployment serves."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        clock: Clock,
        *,
        regions: Mapping[str, Region],
        key_ttl_seconds: int = expiry.MAX_TTL_SECONDS,
        max_start_skew_seconds: float = 300.0,
        observer: KeyObserver | None = None,
    ) -> None:
        self.store = store
        self.observer = observer
        self.audit = AuditTrail(store, signer, clock)
        self._clock = clock
        self._regions = dict(regions)
        self._ttl = expiry.checked_ttl(key_ttl_seconds)
        self._skew = max_start_skew_seconds

    @property
    def key_ttl_seconds(self) -> int:
        """The lifetime given to every key minted here."""
        return self._ttl

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def check_ready(self) -> None:
        """Raise :class:`StoreUnavailable` when the store cannot be reached."""
        self.store.ping()

    def region(self, name: str) -> Region:
        """Return a configured region; the same :class:`InvalidInput` at every entry point otherwise."""
        found = self._regions.get(name) if isinstance(name, str) else None
        if found is None:
            raise InvalidInput("unknown region")
        return found

    def _end(
        self, tx: Transaction, rec: KeyRecord, now: float, *, reason: str, actor: str | None
    ) -> KeyState | None:
        """End a live key: expired if past its expiry, else revoked. Returns the new state if changed."""
        if expiry.is_expired(now, rec.expires_at):
            if tx.end_key(rec.key_id, KeyState.EXPIRED, at=rec.expires_at, reason=EXPIRED_REASON):
                self.audit.append(tx, key_event(EventType.EXPIRED, rec, now, reason=EXPIRED_REASON))
                return KeyState.EXPIRED
            return None
        if tx.end_key(rec.key_id, KeyState.REVOKED, at=now, reason=reason):
            self.audit.append(tx, key_event(EventType.REVOKED, rec, now, actor=actor, reason=reason))
            return KeyState.REVOKED
        return None

    # -- minting --------------------------------------------------------------------------------

    def _checked(self, request: AddNode, now: float) -> AddNode:
        """Validate an AddNode: ids, a configured region, and a start the key can still live from."""
        checked = AddNode(
            cluster=ids.cluster_id(request.cluster),
            node=ids.node_id(request.node),
            instance=ids.instance_id(request.instance) if request.instance is not None else None,
            region=ids.region(request.region),
            operation_id=ids.operation_id(request.operation_id),
            started_at=_started_at(request.started_at),
        )
        self.region(checked.region)
        if expiry.is_expired(now, expiry.expires_at(checked.started_at, self._ttl)):
            raise InvalidInput("invalid started_at: the AddNode began too long ago, its key would be expired")
        if checked.started_at - now > self._skew:
            raise InvalidInput("invalid started_at: the AddNode begins too far in the future")
        return checked

    def add_node(self, request: AddNode, *, actor: str) -> IssuedKey:
        """Mint the node's key, superseding any live key it holds; the plaintext is returned once."""
        now = self._clock.now()
        req = self._checked(request, now)
        actor = _text("actor", actor)
        params = (req.cluster, req.node, req.instance, req.region, req.started_at)
        with self.store.transaction() as tx:
            earlier = tx.find_keys(KeyFilter(operation_id=req.operation_id))
            for prior in earlier:
                if (prior.cluster, prior.node, prior.instance, prior.region, prior.started_at) != params:
                    raise Conflict("operation id was already used for a different AddNode")
            minted = keyformat.mint()
            superseded = [
                live.key_id
                for live in tx.find_keys(KeyFilter(cluster=req.cluster, node=req.node, state=KeyState.LIVE))
                if self._end(tx, live, now, reason=SUPERSEDED, actor=actor) is KeyState.REVOKED
            ]
            record = KeyRecord(
                key_id=minted.key_id,
                cluster=req.cluster,
                node=req.node,
                instance=req.instance,
                region=req.region,
                operation_id=req.operation_id,
                started_at=req.started_at,
                issued_at=now,
                expires_at=expiry.expires_at(req.started_at, self._ttl),
                state=KeyState.LIVE,
                key_hash=keyformat.key_hash(minted.key),
            )
            tx.insert_key(record)
            detail: dict[str, Any] = {
                "operation_id": req.operation_id,
                "expires_at": record.expires_at,
                "retry": bool(earlier),
            }
            if superseded:
                detail["superseded"] = superseded
            self.audit.append(tx, key_event(EventType.ISSUED, record, now, actor=actor, detail=detail))
        log.info(
            "key_issued", key_id=record.key_id, cluster=req.cluster, node=req.node, superseded=superseded
        )
        if superseded and self.observer is not None:
            self.observer.revoked("superseded", len(superseded))
        return IssuedKey(key=minted.key, record=record, superseded=tuple(superseded))

    def user_data(
        self,
        form: str,
        key: str,
        *,
        cluster: str,
        node: str,
        region: str,
        endpoint: str | None = None,
        sources: Sequence[str] = (),
        key_expires_at: float | None = None,
    ) -> str:
        """Render user data of ``form`` that puts ``key`` on the node and starts the agent.

        The region must be configured (its endpoint is the default), and a key this store knows must
        have been issued for exactly this cluster, node and region: user data that names another
        node would start an agent whose every grant is refused. The user data tells the agent when
        the key expires (it stops by then even if it never reaches keysvc): the stored expiry of a
        known key, else ``key_expires_at``; given both, the earlier.
        """
        where = self.region(region)
        with self.store.read() as reader:
            rec = reader.get_key(key_id_of(key))
        return render_user_data(
            form,
            key,
            where,
            cluster=cluster,
            node=node,
            endpoint=endpoint,
            sources=sources,
            known=rec,
            key_expires_at=key_expires_at,
        )

    def bind_instance(self, *, cluster: str, node: str, instance: str, actor: str) -> KeyRecord:
        """Bind the EC2 instance to the node's live key, so termination events for it revoke the key.

        Idempotent: binding the instance already bound returns the key and audits nothing again.
        :class:`NotFound` when the node has no live key, :class:`Conflict` when its key is bound to
        another instance or the instance is bound to another node's live key.
        """
        cluster, node = ids.cluster_id(cluster), ids.node_id(node)
        instance = ids.instance_id(instance)
        actor = _text("actor", actor)
        now = self._clock.now()
        with self.store.transaction() as tx:
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
            self.audit.append(tx, key_event(EventType.BOUND, bound, now, actor=actor))
        log.info("key_bound", key_id=bound.key_id, cluster=cluster, node=node, instance=instance)
        return bound

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
        channel: str | None = None,
    ) -> list[str]:
        """Revoke by exactly one selector; idempotent. Returns the ids this call revoked.

        The selectors are a key id, an instance, a cluster, a node (in every cluster), or a node of one
        cluster (``cluster`` and ``node`` together). ``channel`` names the path for the metrics
        (``admin``, ``terminated``, ``cli``, ``events``); by default it follows from the actor.
        """
        chosen = [v for v in (key_id, cluster if cluster is not None else node, instance) if v is not None]
        if len(chosen) != 1:
            raise InvalidInput(
                "revoke needs exactly one of key_id, cluster (optionally with node), node, instance"
            )
        reason, actor = _text("reason", reason), _text("actor", actor)
        now = self._clock.now()
        with self.store.transaction() as tx:
            if key_id is not None:
                rec = tx.get_key(checked_key_id(key_id))
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
            revoked = [
                rec.key_id
                for rec in targets
                if self._end(tx, rec, now, reason=reason, actor=actor) is KeyState.REVOKED
            ]
        if revoked:
            log.info("keys_revoked", key_ids=revoked, reason=reason, actor=actor)
            if self.observer is not None:
                self.observer.revoked(channel or _channel(actor), len(revoked))
        return revoked

    def sweep(self) -> list[str]:
        """Expire every live key past its expiry: delete its hash and audit it once."""
        now = self._clock.now()
        expired: list[str] = []
        with self.store.transaction() as tx:
            for rec in tx.expired_live_keys(now):
                if tx.end_key(rec.key_id, KeyState.EXPIRED, at=rec.expires_at, reason=EXPIRED_REASON):
                    self.audit.append(tx, key_event(EventType.EXPIRED, rec, now, reason=EXPIRED_REASON))
                    expired.append(rec.key_id)
        if expired:
            log.info("keys_expired", key_ids=expired)
            if self.observer is not None:
                self.observer.expired(len(expired))
        return expired

    def stats(self) -> tuple[int, int]:
        """``(live unexpired keys, audit head seq)`` for the metrics; one read snapshot."""
        now = self._clock.now()
        with self.store.read() as tx:
            live = [
                k
                for k in tx.find_keys(KeyFilter(state=KeyState.LIVE))
                if not expiry.is_expired(now, k.expires_at)
            ]
            head = tx.audit_head()
        return len(live), head.seq if head is not None else 0

    # -- reading --------------------------------------------------------------------------------

    def _effective(self, rec: KeyRecord, now: float) -> KeyRecord:
        """Report a live key past its expiry as expired, before the sweeper has run."""
        if rec.state is KeyState.LIVE and expiry.is_expired(now, rec.expires_at):
            return replace(rec, state=KeyState.EXPIRED, ended_at=rec.expires_at, end_reason=EXPIRED_REASON)
        return rec

    def get_key(self, key_id: str) -> KeyRecord:
        """Return one key; :class:`NotFound` when unknown."""
        with self.store.read() as reader:
            rec = reader.get_key(checked_key_id(key_id))
        if rec is None:
            raise NotFound(f"no key {key_id}")
        return self._effective(rec, self._clock.now())

    def list_keys(
        self,
        *,
        cluster: str | None = None,
        node: str | None = None,
        state: KeyState | None = None,
        replayed: bool | None = None,
    ) -> list[KeyRecord]:
        """Return keys, oldest first, with their state as of now; ``replayed=True``: only keys replayed."""
        where = KeyFilter(
            cluster=ids.cluster_id(cluster) if cluster is not None else None,
            node=ids.node_id(node) if node is not None else None,
            state=KeyState.REVOKED if state is KeyState.REVOKED else None,
            replayed=replayed,
        )
        with self.store.read() as reader:
            found = reader.find_keys(where)
        now = self._clock.now()
        records = [self._effective(rec, now) for rec in found]
        return [rec for rec in records if state is None or rec.state is state]
