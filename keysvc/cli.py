"""The ``keysvc`` command line. The only place where errors become exit codes.

Each command group lives in :mod:`keysvc.commands` and contributes ``register(subparsers)``;
a handler returns an exit code and raises :class:`~keysvc.errors.KeysvcError` on failure. Every
failure is one line on stderr; with ``-o json`` it is also ``{"error", "message", "exit_code"}`` on
stdout. Exit codes, modelled on sysexits(3) where one fits::

    0   success
    1   audit chain does not verify (``audit verify``), or another failed check
    3   not found
    4   refused or invalid input
    5   store unavailable, or (for a command that only reads) no database or signing key where configured
    6   conflict with existing state (an operation id reused differently, a key bound elsewhere)
    64  usage: unknown command or flag, bad flag value (EX_USAGE)
    69  unavailable: the listen address is taken, or this machine lacks the keysvc backend (EX_UNAVAILABLE)
    70  any other keysvc error (EX_SOFTWARE)
    78  configuration error (EX_CONFIG)
    130 interrupted
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
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
    StateMissing,
    StoreUnavailable,
    Unavailable,
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
    "keysvc.commands.config",
    "keysvc.commands.monitoring",
    "keysvc.commands.completion",
)

EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE, EX_CONFIG = 64, 69, 70, 78
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: Top-level modules of the ``keysvc`` extra: without them this machine has the agent only.
BACKEND_MODULES = {
    "cryptography", "google", "boto3", "botocore", "fastapi", "uvicorn", "psycopg", "starlette",
}  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse that never guesses abbreviated flags and never echoes anything shaped like a key.

    A key pasted into argv by mistake (``--key nlk1_...``) would otherwise be printed back in the
    usage error; subparsers inherit this class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line naming the usage error (key-shaped text redacted), then exit 64."""
        self.exit(EX_USAGE, f"{self.prog}: usage error: {logging_setup.redact(message)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser."""
    parser = _Parser(prog="keysvc", description="Per-node ingest keys for nodelogs.")
    parser.add_argument("--config", help="TOML config file (default: $KEYSVC_CONFIG, else built-in defaults)")
    parser.add_argument(
        "--state-dir",
        help="where the database, audit key, credentials and service-account files default to, when not "
        "configured otherwise (state.dir; default: $KEYSVC_STATE_DIR, else ./.state)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        type=str.lower,
        choices=LOG_LEVELS,
        help="log level for stderr JSON logs (default: warning)",
    )
    parser.add_argument("--version", action="version", version=f"keysvc {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def package_version() -> str:
    """The installed nodelogs distribution's version."""
    try:
        return version("nodelogs")
    except PackageNotFoundError:
        return "unknown"


#: How each error leaves the process: (exit code, prefix). Checked in order, so subclasses first.
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (AuditIntegrityError, 1, "audit chain BROKEN: "),
    (ConfigError, EX_CONFIG, "configuration error: "),
    (NotFound, 3, "not found: "),
    (InvalidInput, 4, ""),
    (Refused, 4, ""),
    (StoreUnavailable, 5, "store unavailable: "),
    (StateMissing, 5, "no state: "),
    (Conflict, 6, "conflict: "),
    (Unavailable, EX_UNAVAILABLE, "unavailable: "),
    (KeysvcError, EX_SOFTWARE, "error: "),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    try:
        parser = build_parser()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in BACKEND_MODULES:
            raise
        sys.stderr.write(
            f"keysvc: the keysvc backend is not installed here (no module {exc.name!r}; nodes need only "
            "nodelogs-agent); install it with: pip install 'nodelogs[keysvc]'\n"
        )
        return EX_UNAVAILABLE
    args = parser.parse_args(argv)
    logging_setup.configure(args.log_level)
    try:
        code: int = args.handler(args)
    except KeysvcError as exc:
        return _fail(args, exc)
    except KeyboardInterrupt:
        return 130
    return code


def _fail(args: argparse.Namespace, exc: KeysvcError) -> int:
    """Report ``exc`` on stderr (and as JSON on stdout with ``-o json``); return its exit code."""
    for kind, exit_code, prefix in EXIT_CODES:
        if isinstance(exc, kind):
            message = logging_setup.redact(str(exc))
            sys.stderr.write(f"keysvc: {prefix}{message}\n")
            if getattr(args, "output", None) == "json":
                error = {"error": kind.__name__, "message": message, "exit_code": exit_code}
                sys.stdout.write(json.dumps(error, sort_keys=True) + "\n")
            return exit_code
    raise exc  # unreachable: KeysvcError is the last row


if __name__ == "__main__":
    sys.exit(main())
