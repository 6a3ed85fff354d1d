"""The ASGI middleware every request passes first: size, content type, misused keys, latency.

- The body is read here, up to ``max_body_bytes`` (from ``Content-Length`` at once, and counted
  while reading, so a chunked body cannot slip past), and replayed to the app: 413 if larger.
- ``POST`` bodies to a route that takes them must be ``application/json`` (or ``+json``): 415
  otherwise. A method or path no route serves is left for the router to answer 405 or 404.
- An ingest key in ``Authorization`` on any path but the exchange and grant endpoints: 403, audited.
- Every request's latency lands in the histogram, labelled by route template, not raw path.
- ``HEAD`` is answered wherever ``GET`` is: the request runs as ``GET`` and the body is dropped
  (headers, ``Content-Length`` included, stay as ``GET`` would send them).
- With an access log, each request becomes one structured event: method, route (the template),
  status, duration, client (after trusted proxies) and peer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keysvc.errors import KeysvcError
from keysvc.http import errors
from keysvc.http.auth import Guard, bearer_token, is_ingest_key
from keysvc.http.forwarded import PEER_KEY
from keysvc.metrics import Metrics

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class _BodyTooLargeError(Exception):
    pass


def is_json_content_type(value: str | None) -> bool:
    """Return True for ``application/json`` and ``application/*+json``, with or without parameters."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestGate:
    """Screens requests before the app sees them and times every response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: Guard,
        metrics: Metrics,
        max_body_bytes: int,
        ingest_paths: Sequence[str],
        routes: list[BaseRoute],
        access_log: Any = None,
    ) -> None:
        self.app = app
        self._access_log = access_log
        self._routes = routes
        self._guard = guard
        self._metrics = metrics
        self._max = max_body_bytes
        self._ingest_paths = tuple(ingest_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        head = scope.get("method") == "HEAD"

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        if head:
            scope = {**scope, "method": "GET"}
        matched = next((r for r in self._routes if r.matches(scope)[0] is Match.FULL), None)
        if head and matched is None:
            scope = {**scope, "method": "HEAD"}
        try:
            refusal, replay = await self._screen(scope, receive, routed=matched is not None)
            if refusal is not None:
                await refusal(scope, receive, timed_send)
            else:
                await self.app(scope, replay, timed_send)
        finally:
            method = "HEAD" if head else scope.get("method", "")
            method = method if method in _METHODS else "OTHER"
            template = getattr(scope.get("route") or matched, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            self._metrics.request_seconds.observe(elapsed, method, template, str(status[0]))
            if self._access_log is not None:
                self._log(scope, method, template, status[0], elapsed)

    def _log(self, scope: Scope, method: str, route: str, status: int, elapsed: float) -> None:
        client = scope.get("client")
        self._access_log.info(
            "http_request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
            client=client[0] if client else None,
            peer=scope.get(PEER_KEY, client[0] if client else None),
        )

    async def _screen(
        self, scope: Scope, receive: Receive, *, routed: bool
    ) -> tuple[JSONResponse | None, Receive]:
        method = scope.get("method", "")
        path = scope.get("path", "")
        token = bearer_token(_header(scope, b"authorization"))
        if token is not None and is_ingest_key(token) and path not in self._ingest_paths:
            client = scope.get("client")
            source = client[0] if client else "unknown"
            try:
                await run_in_threadpool(self._guard.ingest_key_misused, token, source, method, path)
            except HTTPException as exc:
                return errors.error_response(exc.status_code, "forbidden", str(exc.detail)), receive
            except KeysvcError as exc:
                return errors.for_error(exc), receive
        if routed and method in _BODY_METHODS and not is_json_content_type(_header(scope, b"content-type")):
            return errors.error_response(415, "unsupported_media_type", "send application/json"), receive
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self._max):
            return self._too_large(), receive
        try:
            body = await self._read_body(receive)
        except _BodyTooLargeError:
            return self._too_large(), receive
        return None, self._replay(body, receive)

    def _too_large(self) -> JSONResponse:
        return errors.error_response(413, "too_large", f"the request body exceeds {self._max} bytes")

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes | None, receive: Receive) -> Receive:
        sent = [body is None]

        async def replay() -> Any:
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
