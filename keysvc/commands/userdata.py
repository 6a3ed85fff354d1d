"""``keysvc userdata render``: the user data AddNode returns, for a key you already hold.

The key is read from ``--key-file`` or from stdin, never from the command line, where any user on
the machine could read it in the process list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from keysvc.core.userdata import FORMS
from keysvc.errors import InvalidInput, StateMissing
from keysvc.runtime import load_settings, open_service
from keysvc.service.userdata import render_user_data


def register(subparsers: Any) -> None:
    """Add the ``userdata`` command group."""
    group = subparsers.add_parser("userdata", help="render EC2 user data that starts the agent")
    sub = group.add_subparsers(dest="userdata_command", required=True, metavar="SUBCOMMAND")
    parser = sub.add_parser(
        "render",
        # No abbreviations: `--key KEY` must not be taken for `--key-file` and put a key in argv.
        allow_abbrev=False,
        help="print user data for a key (read from --key-file or stdin, never argv)",
        description="Print user data that writes the key to /etc/nodelogs/key (0600) and starts "
        "nodelogs-agent.service. The key is read from --key-file, or from stdin when it is omitted.",
    )
    parser.add_argument("--form", choices=FORMS, default="cloud-config", help="user data form")
    parser.add_argument("--cluster", required=True, help="cluster id")
    parser.add_argument("--node", required=True, help="node name")
    parser.add_argument("--region", required=True, help="nodelogs region (selects bucket and endpoint)")
    parser.add_argument(
        "--endpoint", help="the keysvc URL the agent talks to (default: the region's configured endpoint)"
    )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        help="extra log source for the agent: a path, a glob or journal:<unit> (repeatable)",
    )
    parser.add_argument(
        "--key-expires-at",
        type=float,
        help="the key's expiry in Unix seconds (as `keys issue` prints it): the agent stops by it "
        "even when it never reaches keysvc",
    )
    parser.add_argument("--key-file", type=Path, help="file holding the key (default: read stdin)")
    parser.set_defaults(handler=run_render)


def run_render(args: argparse.Namespace) -> int:
    """Render user data to stdout; the key service refuses an unknown region or another node's key."""
    key = _read_key(args.key_file)
    settings = load_settings(args.config, args.state_dir)
    options = {
        "cluster": args.cluster,
        "node": args.node,
        "endpoint": args.endpoint,
        "sources": tuple(args.source),
        "key_expires_at": args.key_expires_at,
    }
    try:
        service = open_service(settings)
    except StateMissing:
        # No state here (a provisioning host, say): no key is known, so none can belong to another node.
        region = settings.regions.get(args.region) if isinstance(args.region, str) else None
        if region is None:
            raise InvalidInput("unknown region") from None
        text = render_user_data(args.form, key, region, known=None, **options)
    else:
        try:
            text = service.user_data(args.form, key, region=args.region, **options)
        finally:
            service.close()
    sys.stdout.write(text)
    return 0


def _read_key(path: Path | None) -> str:
    if path is None:
        if sys.stdin.isatty():
            raise InvalidInput("pass the key on stdin or with --key-file")
        text = sys.stdin.read(4096)
    else:
        try:
            text = path.read_text(encoding="ascii")
        except OSError as exc:
            # The path is not echoed: a key pasted where a path belongs must not reach a log.
            raise InvalidInput(f"cannot read the file given with --key-file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInput("the file given with --key-file is not ASCII text") from exc
    return text.strip()
