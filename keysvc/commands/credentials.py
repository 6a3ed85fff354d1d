"""``keysvc credentials create|list|delete``: provisioner and admin tokens.

``create`` prints the new token once, on stdout; the file keeps only its hash. A running
``keysvc serve`` picks up every change at its next request, so rotation needs no restart:
create the replacement, switch the client over, delete the old one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from keysvc.core.clock import SystemClock
from keysvc.files.credentials import SCOPES, create_credential, delete_credential, read_credentials
from keysvc.runtime import load_settings


def register(subparsers: Any) -> None:
    """Add the ``credentials`` command group."""
    group = subparsers.add_parser("credentials", help="manage provisioner and admin tokens")
    sub = group.add_subparsers(dest="credentials_command", required=True, metavar="SUBCOMMAND")
    create = sub.add_parser("create", help="create a token; it is printed once and stored only as a hash")
    create.add_argument("--name", required=True, help="who uses it, e.g. provisioner-eu")
    create.add_argument(
        "--scope", action="append", required=True, choices=SCOPES, help="repeat for several scopes"
    )
    _output(create)
    create.set_defaults(handler=run_create)
    listing = sub.add_parser("list", help="list credentials (never tokens)")
    _output(listing)
    listing.set_defaults(handler=run_list)
    delete = sub.add_parser("delete", help="delete a credential; servers refuse it at their next request")
    delete.add_argument("--id", required=True, dest="credential_id", help="the credential id")
    delete.set_defaults(handler=run_delete)


def _output(parser: argparse.ArgumentParser) -> None:
    """``-o table|json`` as every listing takes it; ``--json`` stays as the older spelling of ``-o json``."""
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--json", action="store_const", const="json", dest="output", help="same as -o json")


def _say(text: str, *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(text + "\n")


def run_create(args: argparse.Namespace) -> int:
    """Create a credential and print its token once."""
    settings = load_settings(args.config, args.state_dir)
    cred, token = create_credential(
        settings.server.credentials_file, name=args.name, scopes=args.scope, now=SystemClock().now()
    )
    scopes = sorted(cred.scopes)
    if args.output == "json":
        _say(json.dumps({"id": cred.id, "name": cred.name, "scopes": scopes, "token": token}))
    else:
        _say(token)
        _say(f"created credential {cred.id} ({cred.name}: {', '.join(scopes)}); shown only once", err=True)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """List credentials without secrets."""
    settings = load_settings(args.config, args.state_dir)
    creds = read_credentials(settings.server.credentials_file).values()
    rows = [
        {"id": c.id, "name": c.name, "scopes": sorted(c.scopes), "created_at": c.created_at} for c in creds
    ]
    if args.output == "json":
        _say(json.dumps(rows))
        return 0
    _say(f"{'ID':<18}{'NAME':<24}{'CREATED':<22}SCOPES")
    for row in rows:
        _say(f"{row['id']:<18}{row['name']:<24}{row['created_at']:<22}{','.join(row['scopes'])}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    """Delete one credential."""
    settings = load_settings(args.config, args.state_dir)
    removed = delete_credential(settings.server.credentials_file, args.credential_id)
    _say(f"deleted credential {removed.id} ({removed.name})", err=True)
    return 0
