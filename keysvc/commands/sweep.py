"""``keysvc sweep``: expire every key past its expiry now (``keysvc serve`` also does this on a schedule)."""

from __future__ import annotations

import argparse
from typing import Any

from keysvc.commands.keys import service_for
from keysvc.commands.tables import emit, emit_json


def register(subparsers: Any) -> None:
    """Add the ``sweep`` command."""
    sweep = subparsers.add_parser("sweep", help="expire keys past their expiry and delete their hashes")
    sweep.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")
    sweep.set_defaults(handler=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    """Sweep once and print the ids expired by this run."""
    service = service_for(args)
    try:
        expired = service.sweep()
    finally:
        service.close()
    if args.output == "json":
        emit_json({"expired": expired})
    elif expired:
        emit(f"expired {len(expired)} key(s): {', '.join(expired)}")
    else:
        emit("nothing to expire")
    return 0
