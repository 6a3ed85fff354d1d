"""``keysvc events consume``: revoke the keys of terminated instances, from an SQS queue.

The queue is fed by an EventBridge rule (README, "Deploying"). SIGTERM or SIGINT stops the consumer
after the batch in hand; with ``--once`` it handles one batch and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from types import FrameType
from typing import Any

from keysvc.errors import ConfigError, Unavailable
from keysvc.metrics import Metrics
from keysvc.runtime import load_settings, open_service


def register(subparsers: Any) -> None:
    """Add the ``events`` command group."""
    group = subparsers.add_parser("events", help="consume EC2 termination events from SQS")
    sub = group.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    parser = sub.add_parser(
        "consume",
        help="long-poll the events queue and revoke the keys of terminated instances",
        description="Long-poll the SQS queue, revoke the keys of instances that shut down or "
        "terminate, complete Auto Scaling terminate lifecycle actions, and delete each message only "
        "after its revocation committed. Malformed messages stay for the queue's redrive policy.",
    )
    parser.add_argument("--queue-url", help="SQS queue URL (default: events.queue_url in the config)")
    parser.add_argument("--aws-region", help="AWS region of the queue (default: events.aws_region)")
    parser.add_argument("--endpoint-url", help="AWS endpoint override, e.g. moto (default: real AWS)")
    parser.add_argument("--wait-seconds", type=int, help="SQS long-poll wait, 0..20 (default: 20)")
    parser.add_argument("--once", action="store_true", help="handle one batch, print the counters, exit")
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on PORT of --metrics-host",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port")
    parser.set_defaults(handler=run_consume)


def _serve_metrics(metrics: Metrics, host: str, port: int) -> None:
    """Expose ``metrics`` over HTTP from a daemon thread; a taken port is 'unavailable' (69)."""
    import prometheus_client  # noqa: PLC0415

    try:
        prometheus_client.start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise Unavailable(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc


def run_consume(args: argparse.Namespace) -> int:
    """Consume until SIGTERM/SIGINT (or one batch with ``--once``)."""
    # Imported here so that `keysvc --help` and the other commands do not pay for boto3.
    from keysvc.aws.sqs_consumer import EventConsumer, make_clients  # noqa: PLC0415

    settings = load_settings(args.config, args.state_dir)
    config = settings.events
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("queue_url", args.queue_url),
            ("aws_region", args.aws_region),
            ("endpoint_url", args.endpoint_url),
            ("wait_seconds", args.wait_seconds),
        )
        if value is not None
    }
    config = dataclasses.replace(config, **overrides)
    if not 0 <= config.wait_seconds <= 20:
        raise ConfigError("--wait-seconds must be 0..20 (the SQS limit)")
    if not config.queue_url:
        raise ConfigError(
            "no events queue configured (--queue-url, events.queue_url or KEYSVC_EVENTS_QUEUE_URL)"
        )
    metrics = Metrics()
    service = open_service(settings, observer=metrics)
    metrics.watch_store(service.stats)
    if args.metrics_port is not None:
        _serve_metrics(metrics, args.metrics_host, args.metrics_port)
    sqs, autoscaling = make_clients(config)
    consumer = EventConsumer(service, config, sqs, autoscaling, observer=metrics)
    if args.once:
        consumer.poll_once()
    else:
        stop = threading.Event()

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        consumer.run(stop)
    sys.stdout.write(json.dumps(dataclasses.asdict(consumer.counters), sort_keys=True) + "\n")
    return 0
