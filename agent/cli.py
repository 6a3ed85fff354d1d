"""``nodelogs-agent run|check``: the entry point, and the only place where errors become exit codes.

Exit codes of ``run`` (the systemd unit has ``RestartPreventExitStatus=2 10 11 12``)::

    0   stopped on SIGTERM/SIGINT after flushing
    1   unexpected error (systemd restarts the agent; it resumes from its checkpoints)
    2   bad configuration: settings (also a cluster, node or region that disagrees with the key's
        record at keysvc), an unsafe key file, an unusable state directory, or a state file that
        cannot be trusted; the key file is kept
    10  the key expired (after the final flush), by keysvc's clock or, when keysvc never answered,
        by NODELOGS_KEY_EXPIRES_AT or one hour after the first start; the key file is removed
    11  keysvc refused the key; the key file is removed when the refusal is final (keysvc said
        revoked/expired to the key's holder, or this endpoint had accepted the key before), else kept
    12  the key was already finished, or there is no key file: nothing to do
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog

from agent import keyfile, logging_setup, statedir
from agent.checkpoint import StateStore
from agent.config import AgentConfig, load
from agent.errors import (
    AgentError,
    ConfigError,
    KeyExpired,
    KeyRefused,
    KeyUnavailable,
    StateCorrupt,
)
from agent.lifetime import Lifetime, UntilDeadline
from agent.proxyconfig import ProxyConfig
from agent.runner import Agent
from agent.session import Session
from agent.signals import Signals
from agent.transport import Transport

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_EXPIRED, EXIT_REFUSED, EXIT_FINISHED = 0, 1, 2, 10, 11, 12


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="TOML file (default: $NODELOGS_CONFIG, else /etc/nodelogs/agent.toml)"
    )
    parser.add_argument("--endpoint", help="keysvc URL (default: $NODELOGS_ENDPOINT)")
    parser.add_argument("--cluster", help="cluster name (default: $NODELOGS_CLUSTER)")
    parser.add_argument("--node", help="node name (default: $NODELOGS_NODE)")
    parser.add_argument("--region", help="region (default: $NODELOGS_REGION)")
    parser.add_argument(
        "--source",
        dest="sources",
        action="append",
        help="file, glob or journal:<unit>; repeat for several (default: $NODELOGS_SOURCES)",
    )
    parser.add_argument(
        "--key-file", help="the key file (default: $NODELOGS_KEY_FILE, else /etc/nodelogs/key)"
    )
    parser.add_argument("--state-dir", help="state directory (default: /var/lib/nodelogs-agent)")
    parser.add_argument("--chunk-bytes", type=int, help="cut a chunk at this many bytes (default 1048576)")
    parser.add_argument(
        "--chunk-seconds", type=float, help="cut a chunk when data waited this long (default 2)"
    )
    parser.add_argument("--log-level", help="log level for the JSON logs on stderr (default info)")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser; the key is never a flag."""
    parser = argparse.ArgumentParser(
        prog="nodelogs-agent", description="Ship this node's startup logs.", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # No abbreviations: "--key" must not silently mean "--key-file"; the key is never an argument.
    run = sub.add_parser(
        "run", help="tail the sources and upload them until the key expires", allow_abbrev=False
    )
    _add_config_flags(run)
    check = sub.add_parser(
        "check", help="check that keysvc and the bucket are reachable (proxy aware)", allow_abbrev=False
    )
    _add_config_flags(check)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    names = (
        "config",
        "endpoint",
        "cluster",
        "node",
        "region",
        "sources",
        "key_file",
        "state_dir",
        "chunk_bytes",
        "chunk_seconds",
        "log_level",
    )
    return {name: getattr(args, name) for name in names}


def _transport(config: AgentConfig) -> Transport:
    return Transport(
        ProxyConfig.from_env(config.proxy_environ()),
        timeout=config.request_timeout,
        ca_file=config.ca_file,
        proxy_ca_file=config.proxy_ca_file,
    )


def _unfinished_key(key_path: Path, state_dir: Path) -> keyfile.NodeKey:
    """Read the key; :class:`KeyUnavailable` when there is none or it was finished earlier."""
    try:
        key = keyfile.read_key(key_path)
    except KeyUnavailable:
        reason = keyfile.finished_reason(state_dir, None)
        if reason is not None:
            raise KeyUnavailable(
                f"the key for this node is already finished ({reason}); nothing to do"
            ) from None
        raise
    reason = keyfile.finished_reason(state_dir, key.key_id)
    if reason is not None:
        keyfile.remove_key(key_path)
        raise KeyUnavailable(f"key {key.key_id} is already finished ({reason}); nothing to do")
    return key


def run(config: AgentConfig) -> int:
    """Run the agent with a loaded configuration; raise :class:`AgentError` subclasses on failure."""
    log = structlog.get_logger()
    state_dir = statedir.prepare(Path(config.state_dir))
    key = _unfinished_key(Path(config.key_file), state_dir)
    identity = keyfile.read_identity(Path(config.key_file).parent)
    key = dataclasses.replace(key, session=Session(state_dir, key.key_id, identity))
    logging_setup.REDACTOR.own_key = key.secret
    store = StateStore(state_dir).open()
    life = Lifetime(state_dir, key.key_id).start()
    seconds_left = life.seconds_left(wall_now=time.time(), expires_at=config.key_expires_at)
    signals = Signals()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.terminate(time.monotonic())

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agents: list[Agent] = []

    def deadline() -> float:
        """The key's deadline as the agent knows it now (keysvc's, or the bound until it answers)."""
        return agents[0].expires_at if agents else float("inf")

    transport, probe_transport = (
        UntilDeadline(_transport(config), deadline, config.request_timeout) for _ in range(2)
    )
    log.info(
        "agent_starting",
        key_id=key.key_id,
        sources=list(config.sources),
        pid=os.getpid(),
        seconds_left_at_most=round(seconds_left, 1),
    )
    key_deadline = time.monotonic() + seconds_left
    agent = Agent(
        config, key, store, transport, probe_transport, signals=signals, key_deadline=key_deadline, life=life
    )
    agents.append(agent)
    try:
        return agent.run()
    finally:
        transport.close()
        probe_transport.close()


def check(config: AgentConfig) -> int:
    """Run the preflight checks (see :mod:`agent.preflight`); imported here, as only ``check`` needs it."""
    from agent import preflight  # noqa: PLC0415 - only the check command needs the preflight module

    transport = _transport(config)
    try:
        read = functools.partial(preflight.read_credential, state_dir=Path(config.state_dir))
        return preflight.run_check(config, transport, sys.stdout, read_key=read)
    finally:
        transport.close()


def exit_code_for(exc: AgentError) -> int:
    """Map an error that ended ``run``/``check`` to its exit code (see the module docstring)."""
    if isinstance(exc, ConfigError | StateCorrupt):
        return EXIT_CONFIG
    if isinstance(exc, KeyUnavailable):
        return EXIT_FINISHED
    if isinstance(exc, KeyExpired):
        return EXIT_EXPIRED
    if isinstance(exc, KeyRefused):
        return EXIT_REFUSED
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, and map errors to exit codes."""
    args = build_parser().parse_args(argv)
    try:
        config = load(os.environ, _flags(args))
    except ConfigError as exc:
        detail = logging_setup.REDACTOR.scrub(str(exc))
        sys.stderr.write(f"nodelogs-agent: configuration error: {detail}\n")
        return EXIT_CONFIG
    logging_setup.configure(config.log_level)
    log = structlog.get_logger()
    try:
        return run(config) if args.command == "run" else check(config)
    except AgentError as exc:
        failure = exc
    code = exit_code_for(failure)
    detail = logging_setup.REDACTOR.scrub(str(failure))  # a mistyped setting may hold a key
    if code in (EXIT_CONFIG, EXIT_FINISHED):
        # One plain line, no JSON twin: this is what an operator reads in the journal.
        sys.stderr.write(
            f"nodelogs-agent: {'configuration error: ' if code == EXIT_CONFIG else ''}{detail}\n"
        )
        return code
    log.log(
        logging.INFO if code == EXIT_EXPIRED else logging.ERROR,
        "exiting",
        code=code,
        error=type(failure).__name__,
        detail=detail,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
