"""Talking to keysvc (the exchange, upload grants) and to the bucket (PUT), with tenacity retries.

The first grant exchanges the user-data key for a session (:mod:`agent.session`); every grant and
probe after it presents the session, never the key. The exchange's answers map like a grant's.

Policy here, I/O in :mod:`agent.transport`. Answers are mapped to outcomes or to errors from
:mod:`agent.errors`:

- grants: 200 -> :class:`GrantAnswer`, whose cluster, node and region (the key's record) must
  match any the settings give, else :class:`SettingMismatch`; 401/403 -> :class:`KeyRefused` (stop
  at once; ``ended`` set when keysvc answered ``key_expired``/``key_revoked``); 400 ->
  :class:`GrantRejected` (our bug; logged loudly, never taken for a revocation); 429 (``Retry-After``)
  and 5xx -> :class:`RetryableFailure`.
- PUT: 200/201 -> stored; 412 -> already there, counted as delivered (objects are create-only);
  400 ``ExpiredToken`` or 403 -> :class:`UrlExpired` (ask for a fresh grant); 429/5xx ->
  :class:`RetryableFailure`; anything else -> :class:`UploadRefused`.

Retries (:func:`retrying`) use full-jitter exponential backoff (``wait_random_exponential``), honour
``Retry-After``, take an injected ``sleep`` (tests never really sleep) and a ``should_stop`` callable
(revocation, expiry, the SIGTERM flush budget).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import tenacity

from agent.errors import (
    GrantRejected,
    KeyRefused,
    RetryableFailure,
    SettingMismatch,
    TransportError,
    UploadRefused,
    UrlExpired,
)
from agent.keyfile import NodeKey
from agent.transport import Requester, Response
from keysvc.wire import Success, parse_session

log = structlog.get_logger()

#: A grant is not used when less than this is left of its URL's life (server clock).
GRANT_SAFETY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Grant:
    """A signed PUT URL for one object; ``deadline`` is on the local monotonic clock."""

    name: str
    url: str
    headers: Mapping[str, str]
    deadline: float


@dataclass(frozen=True, slots=True)
class GrantAnswer:
    """keysvc's answer: the key's remaining life (as a local monotonic deadline) and the grants."""

    key_id: str
    expires_at: float
    bucket: str
    grants: Mapping[str, Grant]
    #: The key's own scope from its record (``None`` from a keysvc that does not send it).
    scope: Mapping[str, str | None] | None = None


def _retry_after(response: Response) -> float | None:
    value = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_ENDED = {"key_expired": "expired", "key_revoked": "revoked"}


def _ended(response: Response) -> str | None:
    """``expired``/``revoked`` when keysvc told the key's proven holder so, else ``None``."""
    try:
        code = json.loads(response.body[:4096]).get("error")
    except (ValueError, AttributeError):
        return None
    return _ENDED.get(code) if isinstance(code, str) else None


class KeysvcClient:
    """Asks keysvc for upload grants with the node's key; an empty request is a session probe.

    The request carries no cluster, node or region: keysvc takes them from the key's record and
    sends them back, so a mistyped setting can never turn into a refusal (and burn the key). A
    setting that is given is compared with the answer instead (:class:`SettingMismatch`).
    """

    def __init__(
        self,
        transport: Requester,
        endpoint: str,
        key: NodeKey,
        *,
        cluster: str | None = None,
        node: str | None = None,
        region: str | None = None,
        monotonic: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._url = endpoint.rstrip("/") + "/v1/ingest/grants"
        self._exchange_url = endpoint.rstrip("/") + "/v1/ingest/exchange"
        self._key = key
        self._expected = {"cluster": cluster, "node": node, "region": region}
        self._monotonic = monotonic

    def _check_scope(self, answer: GrantAnswer) -> None:
        for name, setting in self._expected.items():
            actual = (answer.scope or {}).get(name)
            if setting is not None and actual is not None and setting != actual:
                raise SettingMismatch(
                    f"setting {name} is {setting!r} but key {answer.key_id} belongs to {name} "
                    f"{actual!r} (NODELOGS_{name.upper()}): fix or unset it; the key file is kept"
                )

    def _post(self, url: str, credential: str, payload: object) -> Response:
        headers = {
            "Authorization": f"Bearer {credential}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        return self._transport.request("POST", url, body=json.dumps(payload).encode(), headers=headers)

    @staticmethod
    def _check_status(
        response: Response, what: str, names: list[str], bugs: tuple[int, ...] = (400,)
    ) -> None:
        if response.status in (401, 403):
            ended = _ended(response)
            detail = f": the key is {ended}" if ended else ""
            raise KeyRefused(f"keysvc refused the key (HTTP {response.status}){detail}", ended)
        if response.status in bugs:
            detail = response.body[:300].decode("utf-8", "replace")
            log.error("grant_rejected_bug", status=response.status, what=what, names=names[:3], body=detail)
            raise GrantRejected(f"keysvc rejected the {what} request (HTTP {response.status}); an agent bug")
        if response.status != 200:
            raise RetryableFailure(f"keysvc answered HTTP {response.status}", _retry_after(response))

    def _exchange(self, nonce: str) -> str:
        """Exchange the user-data key and ``nonce`` for a session (see :mod:`agent.session`)."""
        payload = {"nonce": nonce}
        identity = self._key.session.identity if self._key.session is not None else None
        if identity is not None:
            payload.update(identity_document=identity[0], identity_signature=identity[1])
        response = self._post(self._exchange_url, self._key.secret, payload)
        self._check_status(response, "exchange", [], bugs=(400, 422))
        try:
            session = json.loads(response.body)["session"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableFailure("keysvc sent an exchange answer the agent cannot read") from exc
        if not isinstance(session, str) or not isinstance(parse_session(session), Success):
            raise RetryableFailure("keysvc sent an exchange answer without a well-formed session")
        log.info("key_exchanged", key_id=self._key.key_id)
        return session

    def _credential(self) -> str:
        """The session once exchanged (the user-data key only for a key without a session holder)."""
        if self._key.session is None:
            return self._key.secret
        return self._key.session.bearer(self._exchange)

    def grant(self, names: list[str]) -> GrantAnswer:
        """Ask for PUT URLs for ``names`` (0..64); raise per the module docstring."""
        credential = self._credential()
        sent_at = self._monotonic()
        response = self._post(self._url, credential, {"objects": [{"name": name} for name in names]})
        self._check_status(response, "grant", names)
        answer = self._parse(response.body, sent_at)
        self._check_scope(answer)
        return answer

    def _parse(self, raw: bytes, sent_at: float) -> GrantAnswer:
        try:
            data: dict[str, Any] = json.loads(raw)
            server_time = float(data["server_time"])
            to_local = sent_at - server_time
            grants = {
                str(item["name"]): Grant(
                    name=str(item["name"]),
                    url=str(item["url"]),
                    headers={str(k): str(v) for k, v in dict(item["headers"]).items()},
                    deadline=float(item["expires_at"]) + to_local,
                )
                for item in data["grants"]
            }
            scope = {name: data.get(name) for name in ("cluster", "node", "region")}
            return GrantAnswer(
                key_id=str(data["key_id"]),
                expires_at=float(data["key_expires_at"]) + to_local,
                bucket=str(data.get("bucket", "")),
                grants=grants,
                scope={k: str(v) if v is not None else None for k, v in scope.items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RetryableFailure("keysvc sent a grant answer the agent cannot read") from exc


def _expired_url(response: Response) -> bool:
    if response.status == 403:
        return True
    return response.status == 400 and b"ExpiredToken" in response.body[:4096]


def put_chunk(transport: Requester, grant: Grant, body: bytes) -> str:
    """PUT one chunk through its signed URL; return ``"stored"`` or ``"already-there"``."""
    response = transport.request("PUT", grant.url, headers=dict(grant.headers), body=body)
    if response.status in (200, 201):
        return "stored"
    if response.status == 412:
        return "already-there"
    if _expired_url(response):
        raise UrlExpired(f"the bucket refused the signed URL (HTTP {response.status})")
    if response.status == 429 or response.status >= 500:
        raise RetryableFailure(f"the bucket answered HTTP {response.status}", _retry_after(response))
    raise UploadRefused(f"the bucket answered HTTP {response.status}")


#: Failures worth another attempt; KeyRefused is not among them.
RETRYABLE = (TransportError, RetryableFailure, UrlExpired, UploadRefused, GrantRejected)


class _JitterOrRetryAfter(tenacity.wait.wait_base):
    """Full-jitter exponential backoff, but never sooner than a ``Retry-After`` the server sent."""

    def __init__(self, multiplier: float, max_wait: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=multiplier, max=max_wait)
        self._max = max_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self._jitter(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableFailure) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self._max))
        return wait


def retrying(
    *,
    sleep: Callable[[float], None],
    should_stop: Callable[[], bool],
    max_wait: float = 10.0,
    multiplier: float = 0.2,
) -> tenacity.Retrying:
    """Return the retry policy: retry :data:`RETRYABLE` failures with jitter until ``should_stop()``."""

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("retrying", attempt=state.attempt_number, error=type(error).__name__, detail=str(error))

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RETRYABLE),
        wait=_JitterOrRetryAfter(multiplier, max_wait),
        stop=lambda _state: should_stop(),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
