"""``keysvc serve``: the HTTP service under uvicorn, with the sweeper (and optionally the event consumer).

uvicorn handles SIGTERM and SIGINT itself: it stops accepting connections, lets requests in flight
finish (up to ``--graceful-seconds``), then returns; the sweeper and consumer threads are stopped and
the store closed after that, and the process exits 0.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

import structlog

from keysvc.config import Settings
from keysvc.runtime import load_settings
from keysvc.service.keys import KeyService


def register(subparsers: Any) -> None:
    """Add the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP service",
        description="Serve AddNode, node-terminated, upload grants and the admin API over HTTP. "
        "Configured by --config/KEYSVC_CONFIG and KEYSVC_* variables; see README, 'The service'.",
    )
    parser.add_argument("--host", help="listen address (default: server.host)")
    parser.add_argument("--port", type=int, help="listen port (default: server.port)")
    parser.add_argument(
        "--auth-burst", type=int, help="failed logins one source may make in a burst (server.auth_burst)"
    )
    parser.add_argument(
        "--auth-refill",
        type=float,
        help="failed authentications regained per second (server.auth_refill_per_second)",
    )
    parser.add_argument(
        "--graceful-seconds",
        type=float,
        help="how long requests in flight may finish on SIGTERM (server.graceful_seconds)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    parser.set_defaults(handler=run_serve)


def _build_app(args: argparse.Namespace, settings: Settings, service: KeyService) -> Any:
    """The HTTP application over ``service``, with the URL signer and the failed-login limiter."""
    from keysvc.errors import SigningError  # noqa: PLC0415
    from keysvc.files.credentials import CredentialFile  # noqa: PLC0415
    from keysvc.http import create_app  # noqa: PLC0415
    from keysvc.http.ratelimit import FailureLimiter  # noqa: PLC0415
    from keysvc.runtime import open_ingest, url_signer  # noqa: PLC0415

    server = settings.server
    burst = args.auth_burst if args.auth_burst is not None else server.auth_burst
    refill = args.auth_refill if args.auth_refill is not None else server.auth_refill_per_second
    signer = url_signer(settings)
    try:
        signer.check_ready()
    except SigningError as exc:
        structlog.get_logger().warning(
            "signer_not_ready", error=str(exc), hint="/readyz answers 503 until it loads"
        )
    return create_app(
        service,
        open_ingest(settings, service, signer=signer),
        settings,
        CredentialFile(server.credentials_file),
        limiter=FailureLimiter(burst=burst, per_second=refill),
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run until SIGTERM or SIGINT."""
    # Imported here so that the other commands do not pay for FastAPI, uvicorn and google-cloud-storage.
    import uvicorn  # noqa: PLC0415

    from keysvc.runtime import open_service  # noqa: PLC0415
    from keysvc.service.sweeper import Sweeper  # noqa: PLC0415

    log = structlog.get_logger()
    settings = load_settings(args.config, args.state_dir)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    graceful = (
        args.graceful_seconds if args.graceful_seconds is not None else settings.server.graceful_seconds
    )
    service = open_service(settings, create=True)
    try:
        service.audit.check_signer()
    except BaseException:
        service.close()
        raise
    stop = threading.Event()
    sweeper = Sweeper(service, settings.state.sweep_interval_seconds, stop)
    try:
        app = _build_app(args, settings, service)
        sweeper.start()
        if settings.events.in_serve and settings.events.queue_url:
            from keysvc.aws.sqs_consumer import start_consumer_thread  # noqa: PLC0415

            start_consumer_thread(service, settings.events, stop)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=args.access_log,
            timeout_graceful_shutdown=max(1, int(graceful)),
            server_header=False,
            proxy_headers=False,
            backlog=4096,
        )
        log.info("serving", host=host, port=port, database=settings.state.database.split("://", 1)[0])
        # uvicorn handles SIGTERM/SIGINT during run() and re-raises them afterwards; this handler
        # receives that re-raise, so the cleanup below runs and the process exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda received, _frame: stop.set())
        uvicorn.Server(config).run()
    finally:
        sweeper.stop()
        service.close()
        log.info("stopped")
    return 0
