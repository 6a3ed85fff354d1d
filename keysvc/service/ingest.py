"""Where the key is checked: an agent's ingest key, and the upload grant it buys.

:meth:`IngestService.authenticate` checks a presented key, in this order, and refuses with the
first precise reason that applies: well-formed and checksummed (:mod:`keysvc.wire.keyformat`),
known, matching its stored hash (constant time), not expired, not revoked, in scope
(:mod:`keysvc.core.scope`). Every refusal is audited with that reason; the caller only ever sees the
uniform :class:`~keysvc.errors.Refused`.

:meth:`IngestService.grant` then decides what the key may write: one signed PUT URL per proposed
chunk name, under the node's own prefix in its region's bucket, create-only and size-bounded,
never outliving the key (:mod:`keysvc.core.grants`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NoReturn

import structlog

from keysvc.core import expiry, scope
from keysvc.core.grants import GrantPlan, plan_grants, upload_headers
from keysvc.core.models import EventType, KeyRecord, KeyState, Region, Scope
from keysvc.errors import ConfigError, InvalidInput, InvalidObjectName, KeyEnded, Refused
from keysvc.service.audit import MAX_SOURCE, AuditTrail, key_event, refusal_event
from keysvc.service.ports import Clock, Store, UrlSigner
from keysvc.wire import keyformat
from keysvc.wire.results import Failure, Reason

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class GrantPolicy:
    """How grants are cut: URL lifetime, the size bound signed into each URL, names per request."""

    url_ttl_seconds: int = 300
    max_chunk_bytes: int = 8 * 1024 * 1024
    max_objects_per_grant: int = 64
    sign_concurrency: int = 1  # URLs of one grant signed at once (a signer that makes network calls)


@dataclass(frozen=True, slots=True)
class SignedUpload:
    """One signed PUT: the name the agent proposed, the object keysvc fixed, and how to send it."""

    name: str
    object: str
    url: str
    headers: Mapping[str, str]
    expires_at: int


@dataclass(frozen=True, slots=True)
class GrantAnswer:
    """The URLs for one grant request, and the key and clock facts the agent plans with."""

    record: KeyRecord
    bucket: str
    server_time: float
    uploads: tuple[SignedUpload, ...]


def check_key(rec: KeyRecord | None, key: str, wanted: Scope | None, now: float) -> Failure | None:
    """Return why the stored ``rec`` refuses ``key`` for ``wanted`` at ``now``, or None when it allows it.

    ``wanted=None`` means the caller makes no claims: the key's own record is its scope.
    """
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


class IngestService:
    """Checks ingest keys and turns them into signed upload URLs."""

    def __init__(
        self,
        store: Store,
        audit: AuditTrail,
        clock: Clock,
        *,
        signer: UrlSigner,
        regions: Mapping[str, Region],
        policy: GrantPolicy | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._signer = signer
        self._regions = dict(regions)
        self.policy = policy if policy is not None else GrantPolicy()
        workers = self.policy.sign_concurrency
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="keysvc-sign") if workers > 1 else None

    def check_ready(self) -> None:
        """Raise :class:`SigningError` when no URL can be signed right now."""
        self._signer.check_ready()

    def authenticate(self, presented: str, *, wanted: Scope | None, source: str) -> KeyRecord:
        """Check a presented key for ``wanted``; raise :class:`Refused` with the precise reason (audited).

        ``wanted=None``: the caller makes no claims (the agent no longer sends its settings), and the
        key's own record is its scope. A key whose hash matched but that is expired or revoked raises
        :class:`KeyEnded`, the one refusal answered distinctly, because only the key's holder can
        provoke it; every other refusal is the uniform :class:`Refused`.
        """
        source = str(source)[:MAX_SOURCE]
        now = self._clock.now()
        parsed = keyformat.parse(presented) if isinstance(presented, str) else Failure(Reason.MALFORMED)
        if isinstance(parsed, Failure):
            self._refuse(parsed, source=source, wanted=wanted, now=now)
        key_id = parsed.value.key_id
        with self._store.transaction() as tx:
            rec = tx.get_key(key_id)
            failure = check_key(rec, parsed.value.key, wanted, now)
            if failure is None and rec is not None:
                uses, first_from_source = tx.record_use(rec.key_id, at=now, source=source)
                if first_from_source:
                    event = key_event(EventType.USED, rec, now, source=source, detail={"uses": uses})
                    self._audit.append(tx, event)
                return replace(rec, uses=uses, last_used_at=now)
            failure = failure or Failure(Reason.UNKNOWN)  # check_key fails whenever rec is None
            event = refusal_event(
                failure.reason.value,
                now,
                source=source,
                rec=rec,
                key_id=key_id,
                wanted=wanted,
                check=failure.detail,
            )
            self._audit.append(tx, event)
        log.info("key_refused", key_id=key_id, reason=failure.reason.value, source=source)
        # check_key answers EXPIRED/REVOKED for a record that still has a hash only after it matched.
        proved = rec is not None and rec.key_hash is not None
        if proved and failure.reason in (Reason.EXPIRED, Reason.REVOKED):
            raise KeyEnded(failure.reason.value)
        raise Refused(failure.reason.value)

    def _refuse(self, failure: Failure, *, source: str, wanted: Scope | None, now: float) -> NoReturn:
        with self._store.transaction() as tx:
            event = refusal_event(
                failure.reason.value, now, source=source, wanted=wanted, check=failure.detail
            )
            self._audit.append(tx, event)
        log.info("key_refused", reason=failure.reason.value, source=source)
        raise Refused(failure.reason.value)

    def check_batch(self, count: int) -> None:
        """Refuse a request for more URLs than one grant may carry, before any key is looked at."""
        if count > self.policy.max_objects_per_grant:
            raise InvalidInput(f"at most {self.policy.max_objects_per_grant} objects per request")

    def grant(self, record: KeyRecord, names: Sequence[str], *, source: str) -> GrantAnswer:
        """Sign one PUT URL per proposed chunk name for an authenticated key.

        A bad name is audited as ``bad_object_name`` and raised as :class:`InvalidObjectName`
        (nothing is signed unless every name is good); a key with less than a second to live left
        is audited and refused as ``expired``.
        """
        self.check_batch(len(names))
        region = self._regions.get(record.region)
        if region is None:
            raise ConfigError(f"region {record.region!r} of key {record.key_id} is no longer configured")
        now = self._clock.now()
        try:
            plans = plan_grants(
                names,
                prefix=region.prefix,
                cluster=record.cluster,
                node=record.node,
                now=now,
                key_expires_at=record.expires_at,
                url_ttl_seconds=self.policy.url_ttl_seconds,
            )
        except InvalidObjectName as exc:
            detail = {"error": str(exc), "objects": len(names)}
            self._audit.record_refusal(
                reason=Reason.BAD_OBJECT_NAME, source=source, key_id=record.key_id, detail=detail
            )
            raise
        if plans and plans[0].expires_in < 1:
            detail = {"why": "less than one second of key lifetime left to sign a URL"}
            self._audit.record_refusal(
                reason=Reason.EXPIRED, source=source, key_id=record.key_id, detail=detail
            )
            raise Refused(Reason.EXPIRED)
        headers = upload_headers(self.policy.max_chunk_bytes)

        def sign(plan: GrantPlan) -> str:
            return self._signer.sign_put(
                bucket=region.bucket,
                object_name=plan.object,
                headers=headers,
                signed_at=plan.signed_at,
                expires_in=plan.expires_in,
            )

        urls = (
            list(self._pool.map(sign, plans)) if self._pool and len(plans) > 1 else [sign(p) for p in plans]
        )
        uploads = tuple(
            SignedUpload(
                name=plan.name, object=plan.object, url=url, headers=headers, expires_at=plan.expires_at
            )
            for plan, url in zip(plans, urls, strict=True)
        )
        return GrantAnswer(record=record, bucket=region.bucket, server_time=now, uploads=uploads)
