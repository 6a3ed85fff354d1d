"""Where the key is checked: an agent's ingest key, its exchange for a session, and the grants they buy.

:meth:`IngestService.authenticate` checks a presented key, in this order, and refuses with the
first precise reason that applies: well-formed and checksummed (:mod:`keysvc.wire.keyformat`),
known, matching its stored hash (constant time), not expired, not revoked, in scope
(:mod:`keysvc.core.scope`). A session credential (``nls1_``, :mod:`keysvc.wire.sessionformat`) is
checked the same way against the key's current session hash. :meth:`IngestService.exchange` trades
the user-data key and the agent's nonce for a session, once; any other use of an exchanged key is
refused as ``replayed``. Every refusal is audited with that reason; the caller only ever sees the
uniform :class:`~keysvc.errors.Refused`.

:meth:`IngestService.grant` then decides what the key may write: one signed PUT URL per proposed
chunk name, under the node's own prefix in its region's bucket, create-only and size-bounded,
never outliving the key (:mod:`keysvc.core.grants`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import NoReturn

import structlog

from keysvc.core import expiry, scope
from keysvc.core.grants import GrantPlan, plan_grants, upload_headers
from keysvc.core.identity import IdentityDocument, IdentityPolicy
from keysvc.core.models import EventType, KeyRecord, KeyState, Region, Scope
from keysvc.errors import ConfigError, InvalidInput, InvalidObjectName, KeyEnded, Refused
from keysvc.service import identity_checks
from keysvc.service.audit import MAX_SOURCE, AuditTrail, key_event, refusal_event
from keysvc.service.ports import Clock, IdentityVerifier, Store, Transaction, UrlSigner
from keysvc.wire import keyformat, sessionformat
from keysvc.wire.results import Failure, Reason

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class GrantPolicy:
    """How grants are cut: URL lifetime, the size bound signed into each URL, names per request."""

    url_ttl_seconds: int = 300
    max_chunk_bytes: int = 8 * 1024 * 1024
    max_objects_per_grant: int = 64
    sign_concurrency: int = 1  # URLs of one grant signed at once (a signer that makes network calls)
    #: On a replayed key, also revoke the key and its legitimate session (as OAuth does on reuse).
    revoke_on_replay: bool = False


@dataclass(frozen=True, slots=True)
class SignedUpload:
    """One signed PUT: the name the agent proposed, the object keysvc fixed, and how to send it."""

    name: str
    object: str
    url: str
    headers: Mapping[str, str]
    expires_at: int


@dataclass(frozen=True, slots=True)
class ExchangeAnswer:
    """A fresh session for a key: shown to the agent once, stored only as its hash."""

    record: KeyRecord
    session: str = field(repr=False)
    superseded: bool
    server_time: float


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
    return _check_record(
        rec, lambda r: r.key_hash is not None and keyformat.hash_matches(key, r.key_hash), wanted, now
    )


def check_session(rec: KeyRecord | None, session: str, wanted: Scope | None, now: float) -> Failure | None:
    """Like :func:`check_key`, for a session credential: it must be the key's current session."""
    presented = sessionformat.session_hash(session)
    return _check_record(rec, lambda r: sessionformat.digest_matches(presented, r.session_hash), wanted, now)


def _check_record(
    rec: KeyRecord | None, matches: Callable[[KeyRecord], bool], wanted: Scope | None, now: float
) -> Failure | None:
    if rec is None:
        return Failure(Reason.UNKNOWN)
    if rec.key_hash is None:
        return Failure(Reason.REVOKED if rec.state is KeyState.REVOKED else Reason.EXPIRED)
    if not matches(rec):
        return Failure(Reason.HASH_MISMATCH)
    if expiry.is_expired(now, rec.expires_at) or rec.state is KeyState.EXPIRED:
        return Failure(Reason.EXPIRED)
    if rec.state is KeyState.REVOKED:
        return Failure(Reason.REVOKED)
    checked = scope.check_scope(rec.scope, rec.scope if wanted is None else wanted)
    return checked if isinstance(checked, Failure) else None


class IngestService:
    """Checks ingest keys and sessions, exchanges keys for sessions, and signs upload URLs."""

    def __init__(
        self,
        store: Store,
        audit: AuditTrail,
        clock: Clock,
        *,
        signer: UrlSigner,
        regions: Mapping[str, Region],
        policy: GrantPolicy | None = None,
        identity: IdentityVerifier | None = None,
        identity_policy: IdentityPolicy | None = None,
    ) -> None:
        self._identity = identity
        self.identity_policy = identity_policy if identity_policy is not None else IdentityPolicy()
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

    def _parse(self, presented: str, *, source: str, wanted: Scope | None, now: float) -> tuple[str, bool]:
        """Return the key id a presented key or session names and whether it is a session."""
        if isinstance(presented, str) and sessionformat.is_session(presented):
            parsed_session = sessionformat.parse_session(presented)
            if isinstance(parsed_session, Failure):
                self._refuse(parsed_session, source=source, wanted=wanted, now=now)
            return parsed_session.value.key_id, True
        parsed = keyformat.parse(presented) if isinstance(presented, str) else Failure(Reason.MALFORMED)
        if isinstance(parsed, Failure):
            self._refuse(parsed, source=source, wanted=wanted, now=now)
        return parsed.value.key_id, False

    def authenticate(self, presented: str, *, wanted: Scope | None, source: str) -> KeyRecord:
        """Check a presented key or session for ``wanted``; raise :class:`Refused` with the precise reason.

        ``wanted=None``: the caller makes no claims (the agent no longer sends its settings), and the
        key's own record is its scope. A credential whose hash matched but whose key is expired or
        revoked raises :class:`KeyEnded`, the one refusal answered distinctly, because only the key's
        holder can provoke it; every other refusal is the uniform :class:`Refused`. The user-data key
        itself is accepted only until it is exchanged: after that, any use of it is a ``replayed``
        refusal (:meth:`exchange`).
        """
        source = str(source)[:MAX_SOURCE]
        now = self._clock.now()
        key_id, is_session = self._parse(presented, source=source, wanted=wanted, now=now)
        with self._store.transaction() as tx:
            rec = tx.get_key(key_id)
            check = check_session if is_session else check_key
            failure = check(rec, presented, wanted, now)
            if failure is None and rec is not None and not is_session and rec.exchanged:
                failure = self._replayed(tx, rec, now, source=source, via="key")
            elif failure is None and rec is not None:
                uses, first_from_source = tx.record_use(rec.key_id, at=now, source=source)
                if first_from_source:
                    event = key_event(EventType.USED, rec, now, source=source, detail={"uses": uses})
                    self._audit.append(tx, event)
                return replace(rec, uses=uses, last_used_at=now)
            else:
                self._audit_refusal(tx, failure, rec, key_id, wanted=wanted, source=source, now=now)
        raise self._error(failure, rec, key_id, source=source)

    def exchange(
        self, presented: str, nonce: str, *, source: str, identity: tuple[bytes, str] | None = None
    ) -> ExchangeAnswer:
        """Exchange a user-data key and the agent's nonce for a session credential, once.

        The first exchange fixes the nonce. The same key with the same nonce again is the same agent
        after a crash: a new session supersedes the earlier one (audited ``exchanged``, reason
        ``superseded``). The key with any other nonce is a ``replayed`` refusal, and so is a grant
        with the raw key after the exchange. A malformed nonce is :class:`InvalidInput` and changes
        nothing. ``identity`` is the EC2 instance identity document and its signature: a bad one is
        refused with its precise reason and changes nothing; a good one binds an unbound key.
        """
        if not isinstance(nonce, str) or not sessionformat.is_nonce(nonce):
            raise InvalidInput(f"nonce must be {sessionformat.NONCE_CHARS} base32 characters (a-z, 2-7)")
        source = str(source)[:MAX_SOURCE]
        now = self._clock.now()
        key_id, is_session = self._parse(presented, source=source, wanted=None, now=now)
        if is_session:
            self._refuse(
                Failure(Reason.MALFORMED, "a session cannot be exchanged"),
                source=source,
                wanted=None,
                now=now,
            )
        presented_nonce = sessionformat.nonce_hash(nonce)
        verified = identity_checks.verify(self._identity, identity)
        with self._store.transaction() as tx:
            rec = tx.get_key(key_id)
            failure = check_key(rec, presented, None, now)
            if failure is None and rec is not None:
                same = sessionformat.digest_matches(presented_nonce, rec.nonce_hash)
                minted = sessionformat.mint_session(key_id)
                hashed = sessionformat.session_hash(minted.session)
                if rec.exchanged and not same:
                    failure = self._replayed(tx, rec, now, source=source, via="exchange")
                elif (failure := identity_checks.refusal(self.identity_policy, rec, verified)) is not None:
                    self._audit_refusal(tx, failure, rec, key_id, wanted=None, source=source, now=now)
                elif not tx.exchange(key_id, nonce_hash=presented_nonce, session_hash=hashed, at=now):
                    failure = self._replayed(tx, rec, now, source=source, via="exchange")
                else:
                    self._bind_learned(tx, rec, verified, now, source=source)
                    return self._exchanged(tx, rec, minted.session, now, source=source, superseded=same)
            else:
                self._audit_refusal(tx, failure, rec, key_id, wanted=None, source=source, now=now)
        raise self._error(failure, rec, key_id, source=source)

    def _bind_learned(
        self,
        tx: Transaction,
        rec: KeyRecord,
        doc: IdentityDocument | Failure | None,
        now: float,
        *,
        source: str,
    ) -> None:
        """Bind an unbound key to the instance its verified identity document names (trust on first use)."""
        if not isinstance(doc, IdentityDocument) or rec.instance is not None:
            return
        if tx.bind_instance(rec.key_id, doc.instance_id):
            detail = {
                "learned": "instance identity document",
                "account": doc.account_id,
                "aws_region": doc.region,
            }
            bound = replace(rec, instance=doc.instance_id)
            self._audit.append(tx, key_event(EventType.BOUND, bound, now, source=source, detail=detail))
            log.info("key_bound", key_id=rec.key_id, instance=doc.instance_id, learned="identity document")

    def _exchanged(
        self, tx: Transaction, rec: KeyRecord, session: str, now: float, *, source: str, superseded: bool
    ) -> ExchangeAnswer:
        exchanges = rec.exchanges + 1
        detail = {"exchanges": exchanges, "session_expires_at": rec.expires_at}
        reason = "superseded" if superseded else None
        self._audit.append(
            tx, key_event(EventType.EXCHANGED, rec, now, source=source, reason=reason, detail=detail)
        )
        log.info(
            "key_exchanged", key_id=rec.key_id, source=source, superseded=superseded, exchanges=exchanges
        )
        record = replace(rec, exchanged_at=now, exchanges=exchanges)
        return ExchangeAnswer(record=record, session=session, superseded=superseded, server_time=now)

    def _replayed(self, tx: Transaction, rec: KeyRecord, now: float, *, source: str, via: str) -> Failure:
        """Audit, count and log a use of an exchanged key by someone other than its agent."""
        replays = tx.record_replay(rec.key_id, at=now)
        revoke = self.policy.revoke_on_replay
        detail = {"via": via, "replays": replays, "revoked": revoke}
        self._audit.append(
            tx, refusal_event(Reason.REPLAYED.value, now, source=source, rec=rec, detail=detail)
        )
        if revoke and tx.end_key(rec.key_id, KeyState.REVOKED, at=now, reason=Reason.REPLAYED.value):
            event = key_event(EventType.REVOKED, rec, now, actor="keysvc", reason=Reason.REPLAYED.value)
            self._audit.append(tx, event)
        log.warning(
            "key_replayed", key_id=rec.key_id, source=source, via=via, replays=replays, revoked=revoke
        )
        return Failure(Reason.REPLAYED)

    def _audit_refusal(
        self,
        tx: Transaction,
        failure: Failure | None,
        rec: KeyRecord | None,
        key_id: str,
        *,
        wanted: Scope | None,
        source: str,
        now: float,
    ) -> None:
        failure = failure or Failure(Reason.UNKNOWN)  # the checks fail whenever rec is None
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

    @staticmethod
    def _error(failure: Failure | None, rec: KeyRecord | None, key_id: str, *, source: str) -> Refused:
        """Return the refusal to raise: :class:`KeyEnded` to a proven holder, else the uniform one."""
        failure = failure or Failure(Reason.UNKNOWN)
        if failure.reason is not Reason.REPLAYED:
            log.info("key_refused", key_id=key_id, reason=failure.reason.value, source=source)
        # The checks answer EXPIRED/REVOKED for a record that still has a hash only after it matched.
        proved = rec is not None and rec.key_hash is not None
        if proved and failure.reason in (Reason.EXPIRED, Reason.REVOKED):
            return KeyEnded(failure.reason.value)
        return Refused(failure.reason.value)

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
