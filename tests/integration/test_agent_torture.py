"""The torture run, short: kill -9s, four rotation schemes, 30% failing PUTs, keysvc down; no silent loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.torture import Plan, run
from tests.servers import Server

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("agent-torture")]


def test_torture_short(tmp_path: Path, fake_gcs: Server) -> None:
    """25 kill -9s, rotations (some while down), faults and a keysvc outage: each byte once, or reported."""
    outcome = run(
        Plan(kills=25, seconds_between=(0.3, 1.4), keysvc_down_seconds=4.0, rotate_every=1200),
        tmp_path,
        fake_gcs,
    )
    assert outcome.problems == []
    assert outcome.bytes_lost_silently == 0
    assert outcome.kills == 25
    assert outcome.generations >= 12  # the four schemes each rotated several times
    assert outcome.bytes_written > 2_000_000
    assert sum(outcome.faults.values()) > 10  # the faults really fired
