"""``keysvc demo``: README command 1, the whole flow on this machine (see :mod:`keysvc.devtools.demo`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole flow locally: fake-gcs-server, keysvc serve, AddNode, the agent, the audit",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and its logs")
    parser.add_argument(
        "--no-agent", action="store_true", help="do the grant and PUT in-process instead of running the agent"
    )
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo and return its status."""
    from keysvc.devtools import demo  # noqa: PLC0415 - only this command needs it

    return demo.run(sys.stdout, keep=args.keep, use_agent=not args.no_agent)
