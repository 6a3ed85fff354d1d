"""``keysvc config show``: every setting's effective value and where it came from.

The answer to "which database is this process really using?": each line names the setting, its
value and its source (``flag``, ``env KEYSVC_X``, ``file PATH``, ``state.dir`` or ``default``). A
PostgreSQL password is never shown.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from keysvc.commands.tables import emit, emit_json, table
from keysvc.config import ENV_VARS, SECTIONS, Settings
from keysvc.runtime import load_settings
from keysvc.store.postgres_url import describe


def register(subparsers: Any) -> None:
    """Add the ``config`` command group."""
    config = subparsers.add_parser("config", help="show the effective configuration and its sources")
    sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="every setting, its value and where it came from")
    show.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")
    show.set_defaults(handler=run_show)


def effective(settings: Settings) -> list[dict[str, Any]]:
    """One row per setting: name, variable, value (JSON-ready, password-free) and source."""
    rows = []
    for section, kind in SECTIONS.items():
        values = getattr(settings, section)
        for f in fields(kind):
            value = getattr(values, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            if (section, f.name) == ("state", "database") and not str(value).startswith("sqlite"):
                value = describe(str(value))
            rows.append(
                {
                    "setting": f"{section}.{f.name}",
                    "variable": ENV_VARS[(section, f.name)],
                    "value": value,
                    "source": settings.sources.get(f"{section}.{f.name}", "default"),
                }
            )
    return rows


def run_show(args: argparse.Namespace) -> int:
    """Print the effective configuration."""
    settings = load_settings(args.config, args.state_dir)
    rows = effective(settings)
    regions = {
        name: {"bucket": r.bucket, "prefix": r.prefix, "endpoint": r.endpoint}
        for name, r in settings.regions.items()
    }
    if args.output == "json":
        emit_json({"settings": rows, "regions": regions})
        return 0
    headers = ("SETTING", "VARIABLE", "VALUE", "SOURCE")
    emit(table(headers, [[r["setting"], r["variable"], _text(r["value"]), r["source"]] for r in rows]))
    for name, region in regions.items():
        emit(f"region {name}: bucket {region['bucket']}, prefix {region['prefix']}, " + region["endpoint"])
    return 0


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value) if value != "" else "-"
