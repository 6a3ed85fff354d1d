"""Fixtures the integration tests share: a real ``keysvc serve`` for the agent's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keysvc.devtools import emulator
from tests.agent.stack import BUCKET, Keysvc
from tests.servers import Server


@pytest.fixture
def keysvc(tmp_path: Path, fake_gcs: Server) -> Iterator[Keysvc]:
    """A real keysvc serve on its own state, whose signed URLs point straight at fake-gcs-server."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    service = Keysvc(tmp_path / "keysvc", fake_gcs.url).prepare().start()
    yield service
    service.stop()
