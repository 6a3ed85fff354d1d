"""A keysvc state directory for CLI tests, with the regions the tests use (``eu`` and ``us``) configured.

keysvc refuses a region it does not serve, at every entry point, so tests that issue keys for
``eu`` or ``us`` through ``--state-dir`` also pass this config file, which lives beside the state
directory (never in it, so tests of how the directory is created see it untouched).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from keysvc.runtime import load_settings, open_service
from keysvc.service.keys import KeyService
from tests.servers import run_cli

REGIONS_TOML = """\
[regions.eu]
bucket = "nodelogs-eu"
prefix = "nodelogs"
endpoint = "https://keysvc.eu.test"

[regions.us]
bucket = "nodelogs-us"
prefix = "logs/us"
endpoint = "https://keysvc.us.test"
"""


def config_for(state: Path) -> Path:
    """The regions config beside ``state`` (written on first use)."""
    path = state.parent / f"{state.name}.regions.toml"
    if not path.exists():
        path.write_text(REGIONS_TOML, encoding="utf-8")
    return path


def open_state(state: Path) -> KeyService:
    """Open (creating it if need be, as ``keys issue`` would) the key service of ``state`` in this process."""
    return open_service(load_settings(str(config_for(state)), str(state)), create=True)


def keysvc(
    state: Path, *argv: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``keysvc --config REGIONS --state-dir STATE ARGV...`` as a real process."""
    return run_cli(
        ["keysvc", "--config", str(config_for(state)), "--state-dir", str(state), *argv], check=check, env=env
    )
