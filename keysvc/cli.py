"""The ``keysvc`` command line. The only place where errors become exit codes.

Each command group lives in :mod:`keysvc.commands` and contributes ``register(subparsers)``;
a handler returns an exit code and raises :class:`~keysvc.errors.KeysvcError` on failure.

Exit codes::

    0   success
    1   audit chain does not verify (``audit verify``), or another failed check
    2   usage or configuration error
    3   not found
    4   refused or invalid input
    5   store unavailable
    70  any other keysvc error
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from keysvc.errors import (
    AuditIntegrityError,
    ConfigError,
    InvalidInput,
    KeysvcError,
    NotFound,
    Refused,
    StoreUnavailable,
)

#: Command groups, in the order ``keysvc --help`` lists them. Each module has ``register``.
COMMAND_MODULES = (
    "keysvc.commands.keys",
    "keysvc.commands.audit",
    "keysvc.commands.sweep",
    "keysvc.commands.db",
    "keysvc.commands.userdata",
    "keysvc.commands.events",
    "keysvc.commands.serve",
    "keysvc.commands.credentials",
    "keysvc.commands.logs",
    "keysvc.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser."""
    parser = argparse.ArgumentParser(prog="keysvc", description="Per-node ingest keys for nodelogs.")
    parser.add_argument("--config", help="TOML config file (default: $KEYSVC_CONFIG, else built-in defaults)")
    parser.add_argument(
        "--state-dir",
        help="directory for the SQLite database and signing keys (default: $KEYSVC_STATE_DIR, else ./.state)",
    )
    parser.add_argument("--log-level", default="warning", help="log level for stderr JSON logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    from keysvc import logging_setup

    parser = build_parser()
    args = parser.parse_args(argv)
    logging_setup.configure(args.log_level)
    try:
        code: int = args.handler(args)
    except AuditIntegrityError as exc:
        print(f"keysvc: audit chain BROKEN: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"keysvc: configuration error: {exc}", file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"keysvc: not found: {exc}", file=sys.stderr)
        return 3
    except (InvalidInput, Refused) as exc:
        print(f"keysvc: {exc}", file=sys.stderr)
        return 4
    except StoreUnavailable as exc:
        print(f"keysvc: store unavailable: {exc}", file=sys.stderr)
        return 5
    except KeysvcError as exc:
        print(f"keysvc: error: {exc}", file=sys.stderr)
        return 70
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
