"""README command 1: `keysvc demo` runs the whole flow with real processes and cleans up after itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import servers

pytestmark = pytest.mark.integration


@pytest.mark.xdist_group("demo")
def test_demo_runs_end_to_end() -> None:
    """The demo uploads the boot log through the real agent, shows it reassembled and the audit verified."""
    result = servers.run_cli(["keysvc", "demo"], timeout=60)
    out = result.stdout
    assert "nodelogs-agent (pid" in out
    assert "exited with status 11" in out
    assert "reassembled, they equal the node's log byte for byte: True" in out
    assert "audit chain verifies: True" in out
    timeline = [m.group(1) for m in re.finditer(r"#\d+ +\S+ +(\w+) ", out)]
    assert timeline[:4] == ["issued", "exchanged", "used", "revoked"]  # the agent exchanges its key first
    assert re.search(r"nl[ks]1_[a-z2-7]{16}_", out) is None
    workdir = re.search(r"in (/tmp/nodelogs-demo-[^/]+)/state", out)
    assert workdir is not None
    assert not Path(workdir.group(1)).exists()
