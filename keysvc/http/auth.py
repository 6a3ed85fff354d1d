"""Who is calling: bearer credentials, the failed-authentication rate limit, and their audit records.

Three kinds of caller, each with its own check:

- a provisioner or admin token (:mod:`keysvc.files.credentials`), which must carry the endpoint's scope;
- an ingest key or session, accepted only by the exchange and upload-grant endpoints and checked by
  the service (a session cannot be exchanged; a key, once exchanged, is refused as ``replayed``);
- an ingest key anywhere else: refused with 403 and audited as ``out_of_scope``, without any lookup.

Every failed authentication spends a token of the caller's address in the
:class:`~keysvc.http.ratelimit.FailureLimiter` and is audited; a source that ran dry gets 429 before
any credential is examined, and its lockout is audited once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import HTTPException, Request

from keysvc.core.clock import Clock
from keysvc.core.models import KeyRecord, Scope
from keysvc.errors import RateLimited, Refused
from keysvc.files.credentials import Credential, CredentialFile
from keysvc.http.ratelimit import FailureLimiter
from keysvc.metrics import Metrics
from keysvc.service.audit import AuditTrail
from keysvc.service.ingest import ExchangeAnswer, IngestService
from keysvc.wire.keyformat import PREFIX as INGEST_KEY_PREFIX
from keysvc.wire.keyformat import parse
from keysvc.wire.results import Failure, Reason
from keysvc.wire.sessionformat import is_session, parse_session

log = structlog.get_logger()


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def is_ingest_key(token: str | None) -> bool:
    """Return True when a presented token claims to be an ingest key or an agent's session."""
    return token is not None and (token.startswith(INGEST_KEY_PREFIX) or is_session(token))


def source_of(request: Request) -> str:
    """Return the caller's address as the rate limit and the audit know it."""
    return request.client.host if request.client is not None else "unknown"


class Guard:
    """Authenticates callers, rate-limits failures and audits refusals."""

    def __init__(
        self,
        ingest: IngestService,
        audit: AuditTrail,
        *,
        credentials: CredentialFile,
        limiter: FailureLimiter,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._ingest = ingest
        self._audit = audit
        self._credentials = credentials
        self._limiter = limiter
        self._clock = clock
        self._metrics = metrics

    def _refuse(self, reason: str, source: str, **audit: Any) -> None:
        self._metrics.refusals.inc(reason)
        self._audit.record_refusal(reason=reason, source=source, **audit)

    def admit(self, source: str) -> None:
        """Raise :class:`RateLimited` when ``source`` has failed too often lately."""
        verdict = self._limiter.check(source, self._clock.now())
        if verdict.allowed:
            return
        self._metrics.refusals.inc(Reason.RATE_LIMITED)
        if verdict.first_refusal:
            self._audit.record_refusal(
                reason=Reason.RATE_LIMITED, source=source, detail={"retry_after": verdict.retry_after}
            )
        raise RateLimited(verdict.retry_after)

    def _failed(self, source: str) -> None:
        self._limiter.failed(source, self._clock.now())

    def token(self, request: Request, scope: str) -> Credential:
        """Return the provisioner or admin credential of the request, which must carry ``scope``."""
        source = source_of(request)
        self.admit(source)
        presented = bearer_token(request.headers.get("authorization"))
        endpoint = request.url.path
        if presented is None:
            self._failed(source)
            self._refuse(Reason.MISSING_CREDENTIAL, source, detail={"endpoint": endpoint})
            raise Refused(Reason.MISSING_CREDENTIAL)
        result = self._credentials.authenticate(presented, scope)
        if isinstance(result, Failure):
            if result.reason is Reason.OUT_OF_SCOPE:
                self._refuse(Reason.OUT_OF_SCOPE, source, detail={"endpoint": endpoint, "why": result.detail})
                raise HTTPException(403, "this credential lacks the scope this endpoint needs")
            self._failed(source)
            self._refuse(result.reason, source, detail={"endpoint": endpoint, "credential": "token"})
            raise Refused(result.reason)
        return result.value

    def ingest(self, request: Request, wanted: Scope | None) -> KeyRecord:
        """Return the record of the request's ingest key; the service audits every refusal."""
        source = source_of(request)
        self.admit(source)
        presented = bearer_token(request.headers.get("authorization"))
        if presented is None:
            self._failed(source)
            self._refuse(Reason.MISSING_CREDENTIAL, source, detail={"endpoint": request.url.path})
            raise Refused(Reason.MISSING_CREDENTIAL)
        try:
            return self._ingest.authenticate(presented, wanted=wanted, source=source)
        except Refused as exc:
            self._failed(source)
            self._metrics.refusals.inc(exc.reason)
            raise

    def exchange(self, request: Request, nonce: str, identity: tuple[bytes, str] | None) -> ExchangeAnswer:
        """Exchange the request's ingest key for a session; the service audits every refusal."""
        source = source_of(request)
        self.admit(source)
        presented = bearer_token(request.headers.get("authorization"))
        if presented is None:
            self._failed(source)
            self._refuse(Reason.MISSING_CREDENTIAL, source, detail={"endpoint": request.url.path})
            raise Refused(Reason.MISSING_CREDENTIAL)
        try:
            return self._ingest.exchange(presented, nonce, source=source, identity=identity)
        except Refused as exc:
            self._failed(source)
            self._metrics.refusals.inc(exc.reason)
            raise

    def ingest_key_misused(self, presented: str, source: str, method: str, path: str) -> None:
        """Audit an ingest key presented outside the grant endpoint; raises 429 or 403."""
        self.admit(source)
        self._failed(source)
        parsed = parse_session(presented) if is_session(presented) else parse(presented)
        key_id = None if isinstance(parsed, Failure) else parsed.value.key_id
        self._refuse(
            Reason.OUT_OF_SCOPE,
            source,
            key_id=key_id,
            detail={"endpoint": path[:200], "method": method[:16], "credential": "ingest key"},
        )
        log.warning("ingest_key_out_of_scope", source=source, key_id=key_id, path=path[:200])
        raise HTTPException(403, "an ingest key may only request upload grants")


def requires(guard: Guard, scope: str) -> Callable[[Request], Credential]:
    """Return a FastAPI dependency that authenticates a token with ``scope`` before the body is validated."""

    def dependency(request: Request) -> Credential:
        return guard.token(request, scope)

    return dependency
