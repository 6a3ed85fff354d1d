"""The FastAPI application: routes, error mapping, health, readiness, metrics, OpenAPI.

:func:`create_app` wires collaborators that are built elsewhere (``keysvc serve`` or a test), so
the app itself opens nothing. Endpoints that touch the store are plain ``def`` functions: FastAPI
runs them in its thread pool, and the store is thread-safe.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from keysvc import metrics as metrics_module
from keysvc.config import Settings
from keysvc.core.clock import Clock, SystemClock
from keysvc.errors import KeysvcError
from keysvc.files.credentials import CredentialFile
from keysvc.http import admin, errors, ingest, nodes
from keysvc.http.auth import Guard
from keysvc.http.context import Context
from keysvc.http.forwarded import ForwardedClients, parse_networks
from keysvc.http.gate import RequestGate
from keysvc.http.ratelimit import FailureLimiter
from keysvc.http.responses import documented
from keysvc.http.schemas import Health
from keysvc.metrics import Metrics
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService

_CODES = {404: "not_found", 405: "method_not_allowed", 403: "forbidden", 401: "unauthorized"}


def create_app(
    keys: KeyService,
    ingest_service: IngestService,
    settings: Settings,
    credentials: CredentialFile,
    *,
    clock: Clock | None = None,
    limiter: FailureLimiter | None = None,
    metrics: Metrics | None = None,
    access_log: Any = None,
) -> FastAPI:
    """Build the keysvc HTTP application around open services."""
    clock = clock if clock is not None else SystemClock()
    metrics = _observed(metrics if metrics is not None else Metrics(), keys, ingest_service)
    limiter = limiter if limiter is not None else FailureLimiter()
    guard = Guard(
        ingest_service, keys.audit, credentials=credentials, limiter=limiter, clock=clock, metrics=metrics
    )
    ctx = Context(
        keys=keys, ingest=ingest_service, settings=settings, guard=guard, clock=clock, metrics=metrics
    )

    app = FastAPI(
        title="keysvc",
        version="1",
        summary="Per-node, one-hour, ingest-only keys and the signed upload URLs they buy.",
        openapi_url="/openapi.json",
        docs_url=None,  # no browser UI (it would load scripts from a CDN); the document is enough
        redoc_url=None,
    )
    routers = [
        nodes.router(ctx),
        ingest.router(ctx),
        admin.router(ctx),
        admin.audit_router(ctx),
        _ops_router(keys, ingest_service, metrics),
    ]
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        RequestGate,
        guard=guard,
        metrics=metrics,
        max_body_bytes=settings.server.max_body_bytes,
        ingest_paths=ingest.INGEST_PATHS,
        # The routers' own routes carry their path templates (included routers are wrapped).
        routes=[route for router in routers for route in router.routes],
        access_log=access_log,
    )
    # Added last, so outermost: every layer below sees the real client behind trusted proxies.
    app.add_middleware(ForwardedClients, trusted=parse_networks(settings.server.trusted_proxies))
    _install_error_handlers(app)
    return app


def _observed(metrics: Metrics, keys: KeyService, ingest_service: IngestService) -> Metrics:
    """Let ``metrics`` hear the key service (unless it has an observer) and read the store and readiness."""
    if keys.observer is None:
        keys.observer = metrics
    metrics.watch_store(keys.stats)

    def ready() -> None:
        keys.check_ready()
        ingest_service.check_ready()

    metrics.watch_readiness(ready)
    return metrics


def _ops_router(keys: KeyService, ingest_service: IngestService, metrics: Metrics) -> APIRouter:
    api = APIRouter(tags=["ops"])

    @api.get("/healthz", response_model=Health, summary="Liveness")
    def healthz() -> Health:
        return Health(status="ok")

    @api.get("/readyz", response_model=Health, responses=documented(503), summary="Store and signer ready")
    def readyz() -> Health:
        keys.check_ready()
        ingest_service.check_ready()
        return Health(status="ready")

    @api.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=metrics_module.CONTENT_TYPE)

    return api


def _install_error_handlers(app: FastAPI) -> None:
    log = structlog.get_logger()

    async def on_keysvc_error(_request: Request, exc: Exception) -> JSONResponse:
        response = (
            errors.for_error(exc)
            if isinstance(exc, KeysvcError)
            else errors.error_response(500, "internal", "")
        )
        if response.status_code >= 500:
            log.error("request_failed", error=type(exc).__name__, message=str(exc))
        return response

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        found = exc.errors() if isinstance(exc, RequestValidationError) else []
        status, code, message = errors.describe_validation(found)
        return errors.error_response(status, code, message)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, HTTPException):
            return errors.error_response(500, "internal", "internal error")
        code = _CODES.get(exc.status_code, "error")
        return errors.error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def on_anything(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error=type(exc).__name__)
        return errors.error_response(500, "internal", "internal error")

    app.add_exception_handler(KeysvcError, on_keysvc_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_anything)
