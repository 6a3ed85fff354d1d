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
    6   conflict with existing state (an operation id reused differently, a key bound elsewhere)
    70  any other keysvc error
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from keysvc import logging_setup
from keysvc.errors import (
    AuditIntegrityError,
    ConfigError,
    Conflict,
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


class _Parser(argparse.ArgumentParser):
    """argparse that never guesses abbreviated flags and never echoes anything shaped like a key.

    A key pasted into argv by mistake (``--key nlk1_...``) would otherwise be printed back in the
    usage error; subparsers inherit this class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print usage and the error with key-shaped text redacted, then exit 2."""
        super().error(logging_setup.redact(message))


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser."""
    parser = _Parser(prog="keysvc", description="Per-node ingest keys for nodelogs.")
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


#: How each error leaves the process: (exit code, prefix). Checked in order, so subclasses first.
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (AuditIntegrityError, 1, "audit chain BROKEN: "),
    (ConfigError, 2, "configuration error: "),
    (NotFound, 3, "not found: "),
    (InvalidInput, 4, ""),
    (Refused, 4, ""),
    (StoreUnavailable, 5, "store unavailable: "),
    (Conflict, 6, "conflict: "),
    (KeysvcError, 70, "error: "),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging_setup.configure(args.log_level)
    try:
        code: int = args.handler(args)
    except KeysvcError as exc:
        for kind, exit_code, prefix in EXIT_CODES:
            if isinstance(exc, kind):
                sys.stderr.write(f"keysvc: {prefix}{logging_setup.redact(str(exc))}\n")
                return exit_code
        raise  # unreachable: KeysvcError is the last row
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
