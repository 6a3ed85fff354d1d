"""``keysvc serve``: the HTTP service under uvicorn, with the sweeper (and optionally the event consumer).

uvicorn handles SIGTERM and SIGINT itself: it stops accepting connections, lets requests in flight
finish (up to ``--graceful-seconds``), then returns; the sweeper and consumer threads are stopped and
the store closed after that, and the process exits 0.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import structlog

from keysvc import logging_setup
from keysvc.config import Settings
from keysvc.errors import Unavailable
from keysvc.metrics import Metrics
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
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request as one JSON event (method, route, status, duration_ms, client, peer)",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (server.tls_cert_file)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (server.tls_key_file)")
    parser.set_defaults(handler=run_serve)


def _build_app(args: argparse.Namespace, settings: Settings, service: KeyService, metrics: Metrics) -> Any:
    """The HTTP application over ``service``, with the URL signer and the failed-login limiter."""
    from keysvc.errors import SigningError  # noqa: PLC0415
    from keysvc.files.credentials import CredentialFile  # noqa: PLC0415
    from keysvc.http import create_app  # noqa: PLC0415
    from keysvc.http.ratelimit import FailureLimiter  # noqa: PLC0415
    from keysvc.runtime import open_ingest, url_signer  # noqa: PLC0415

    server = settings.server
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
        limiter=FailureLimiter(burst=server.auth_burst, per_second=server.auth_refill_per_second),
        access_log=logging_setup.access_logger() if args.access_log else None,
        metrics=metrics,
    )


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket before anything else, so a taken address is one clear error (exit 69)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _uvicorn_server(app: Any, settings: Settings) -> Any:
    """uvicorn's server for ``app``; with a certificate and key, TLS that follows the files."""
    import uvicorn  # noqa: PLC0415 - only serve pays for uvicorn

    server = settings.server
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,
        access_log=False,  # keysvc's own structured access log replaces uvicorn's string
        timeout_graceful_shutdown=max(1, int(server.graceful_seconds)),
        server_header=False,
        proxy_headers=False,  # forwarded headers are read by keysvc, from server.trusted_proxies only
        backlog=4096,
    )
    config.load()
    if server.tls_cert_file is not None and server.tls_key_file is not None:
        from keysvc.http.tls import ReloadingCertificate  # noqa: PLC0415

        config.ssl = ReloadingCertificate(server.tls_cert_file, server.tls_key_file).outer
    return uvicorn.Server(config)


def serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """serve's flags as settings: a flag beats its variable, the file and the default."""
    return {
        "server.host": args.host,
        "server.port": args.port,
        "server.auth_burst": args.auth_burst,
        "server.auth_refill_per_second": args.auth_refill,
        "server.graceful_seconds": args.graceful_seconds,
        "server.tls_cert_file": Path(args.tls_cert) if args.tls_cert else None,
        "server.tls_key_file": Path(args.tls_key) if args.tls_key else None,
    }


def run_serve(args: argparse.Namespace) -> int:
    """Run until SIGTERM or SIGINT."""
    # Imported here so that the other commands do not pay for FastAPI, uvicorn and google-cloud-storage.
    from keysvc.runtime import open_service  # noqa: PLC0415
    from keysvc.service.sweeper import Sweeper  # noqa: PLC0415

    log = structlog.get_logger()
    settings = load_settings(args.config, args.state_dir, serve_flags(args))
    sock = listen_socket(settings.server.host, settings.server.port)
    metrics = Metrics()
    service = open_service(settings, create=True, observer=metrics)
    stop = threading.Event()
    sweeper = Sweeper(service, settings.state.sweep_interval_seconds, stop, on_sweep=metrics.swept)
    try:
        service.audit.check_signer()
        server = _uvicorn_server(_build_app(args, settings, service, metrics), settings)
        sweeper.start()
        if settings.events.in_serve and settings.events.queue_url:
            from keysvc.aws.sqs_consumer import start_consumer_thread  # noqa: PLC0415

            start_consumer_thread(service, settings.events, stop, observer=metrics)
        log.info(
            "serving",
            host=settings.server.host,
            port=settings.server.port,
            tls=settings.server.tls_cert_file is not None,
            database=settings.state.database.split("://", 1)[0],
        )
        # uvicorn handles SIGTERM/SIGINT during run() and re-raises them afterwards; this handler
        # receives that re-raise, so the cleanup below runs and the process exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda received, _frame: stop.set())
        server.run(sockets=[sock])
    finally:
        sweeper.stop()
        service.close()
        sock.close()
        log.info("stopped")
    return 0
