"""``keysvc monitoring alerts|dashboard``: print the shipped Prometheus alert rules or Grafana dashboard.

Both ship as package data (``keysvc/monitoring/``), so an installed keysvc prints the rules that
match its own metrics: ``keysvc monitoring alerts > /etc/prometheus/rules/keysvc.yml``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import Any

FILES = {"alerts": "alerts.yml", "dashboard": "dashboard.json"}


def register(subparsers: Any) -> None:
    """Add the ``monitoring`` command."""
    parser = subparsers.add_parser("monitoring", help="print the Prometheus alert rules or Grafana dashboard")
    parser.add_argument(
        "what", choices=sorted(FILES), help="alerts (Prometheus rules) or dashboard (Grafana)"
    )
    parser.set_defaults(handler=run_monitoring)


def shipped(what: str) -> str:
    """The text of a shipped monitoring file."""
    return resources.files("keysvc.monitoring").joinpath(FILES[what]).read_text(encoding="utf-8")


def run_monitoring(args: argparse.Namespace) -> int:
    """Print the file."""
    sys.stdout.write(shipped(args.what))
    return 0
