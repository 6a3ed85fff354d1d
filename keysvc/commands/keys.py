"""``keysvc keys issue|bind|list|show|revoke``: ingest keys for operators, modelled on ``kubeadm token``.

``keys issue`` prints the plaintext key exactly once; no other command can print it, because the
store only ever held its hash.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from typing import Any

from keysvc.commands.tables import KEY_HEADERS, emit, emit_json, iso, key_json, key_row, parse_time, table
from keysvc.core.clock import SystemClock
from keysvc.core.models import AddNode, KeyState
from keysvc.runtime import load_settings, open_service
from keysvc.service.keys import KeyService


def actor() -> str:
    """Who is acting, for the audit: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def service_for(args: argparse.Namespace, *, create: bool = False) -> KeyService:
    """Open the service the global ``--config``/``--state-dir`` flags (or the environment) point at.

    Only ``keys issue`` passes ``create=True``: every other command refuses state that does not exist.
    """
    return open_service(load_settings(args.config, args.state_dir), create=create)


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")


def register(subparsers: Any) -> None:
    """Add the ``keys`` command group."""
    keys = subparsers.add_parser("keys", help="issue, bind, list, show and revoke ingest keys")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    issue = sub.add_parser("issue", help="mint a key for a node (prints it once)")
    issue.add_argument("--cluster", required=True)
    issue.add_argument("--node", required=True)
    issue.add_argument("--instance", help="EC2 instance id, if known (else bind it later with `keys bind`)")
    issue.add_argument("--region", required=True)
    issue.add_argument("--operation-id", help="AddNode operation id (default: a fresh cli-<uuid>)")
    issue.add_argument(
        "--started-at", help="when the AddNode began: epoch seconds or ISO 8601 (default: now)"
    )
    _output(issue)
    issue.set_defaults(handler=run_issue)

    bind = sub.add_parser(
        "bind", help="bind a node's live key to its EC2 instance (after RunInstances returned the id)"
    )
    bind.add_argument("--cluster", required=True)
    bind.add_argument("--node", required=True)
    bind.add_argument("--instance", required=True, help="EC2 instance id")
    _output(bind)
    bind.set_defaults(handler=run_bind)

    listing = sub.add_parser("list", help="list keys")
    listing.add_argument("--cluster")
    listing.add_argument("--node")
    listing.add_argument("--state", choices=[s.value for s in KeyState])
    listing.add_argument(
        "--replayed",
        action="store_true",
        help="only keys whose user-data key was replayed after its exchange",
    )
    _output(listing)
    listing.set_defaults(handler=run_list)

    show = sub.add_parser("show", help="show one key")
    show.add_argument("key_id", metavar="KEY_ID")
    _output(show)
    show.set_defaults(handler=run_show)

    revoke = sub.add_parser(
        "revoke", help="revoke by key id, instance, cluster, node, or one cluster's node (--cluster + --node)"
    )
    revoke.add_argument("key_id", metavar="KEY_ID", nargs="?")
    revoke.add_argument("--node", help="a node name; with --cluster, only that cluster's node")
    revoke.add_argument("--instance", help="an EC2 instance id")
    revoke.add_argument("--cluster", help="every key of the cluster, or with --node one node of it")
    revoke.add_argument("--reason", required=True)
    _output(revoke)
    revoke.set_defaults(handler=run_revoke)


def run_issue(args: argparse.Namespace) -> int:
    """Mint a key and print it, its id and its expiry."""
    now = SystemClock().now()
    started = parse_time(args.started_at, now) if args.started_at else now
    service = service_for(args, create=True)
    try:
        issued = service.add_node(
            AddNode(
                cluster=args.cluster,
                node=args.node,
                instance=args.instance,
                region=args.region,
                operation_id=args.operation_id or f"cli-{uuid.uuid4()}",
                started_at=started,
            ),
            actor=actor(),
        )
    finally:
        service.close()
    rec = issued.record
    if args.output == "json":
        emit_json({**key_json(rec, now), "key": issued.key, "superseded": list(issued.superseded)})
    else:
        emit(f"key:         {issued.key}")
        emit(f"key id:      {rec.key_id}")
        emit(f"expires:     {iso(rec.expires_at)}")
        if issued.superseded:
            emit(f"superseded:  {', '.join(issued.superseded)}")
    sys.stderr.write("keysvc: the key above is shown once and cannot be shown again\n")
    return 0


def run_bind(args: argparse.Namespace) -> int:
    """Bind the node's live key to its instance, so termination events for the instance revoke it."""
    service = service_for(args)
    try:
        rec = service.bind_instance(
            cluster=args.cluster, node=args.node, instance=args.instance, actor=actor()
        )
    finally:
        service.close()
    if args.output == "json":
        emit_json({"key_id": rec.key_id, "instance": rec.instance})
    else:
        emit(f"key {rec.key_id} is bound to instance {rec.instance}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """List keys with their state as of now."""
    service = service_for(args)
    try:
        found = service.list_keys(
            cluster=args.cluster,
            node=args.node,
            state=KeyState(args.state) if args.state else None,
            replayed=True if args.replayed else None,
        )
    finally:
        service.close()
    now = SystemClock().now()
    if args.output == "json":
        emit_json([key_json(rec, now) for rec in found])
    else:
        emit(table(KEY_HEADERS, [key_row(rec, now) for rec in found]))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Show every field of one key (never its secret: only a hash was ever kept)."""
    service = service_for(args)
    try:
        rec = service.get_key(args.key_id)
    finally:
        service.close()
    data = key_json(rec, SystemClock().now())
    if args.output == "json":
        emit_json(data)
    else:
        width = max(len(name) for name in data) + 2
        for name, value in data.items():
            emit(f"{name + ':':<{width}}{'-' if value is None else value}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke by exactly one selector and print the ids revoked now (none if already ended)."""
    service = service_for(args)
    try:
        revoked = service.revoke(
            reason=args.reason,
            actor=actor(),
            key_id=args.key_id,
            cluster=args.cluster,
            node=args.node,
            instance=args.instance,
        )
    finally:
        service.close()
    if args.output == "json":
        emit_json({"revoked": revoked})
    elif revoked:
        emit(f"revoked {len(revoked)} key(s): {', '.join(revoked)}")
    else:
        emit("nothing to revoke: no matching live key")
    return 0
