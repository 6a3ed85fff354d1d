"""Shared fixtures: real servers, started once per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import servers


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[servers.Server]:
    """A fake-gcs-server for the whole session."""
    with servers.running(servers.start_fake_gcs) as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[servers.Server]:
    """A moto server for the whole session."""
    with servers.running(servers.start_moto) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[servers.Server]:
    """A PostgreSQL 15 server for the whole session; tests create their own databases."""
    with servers.running(servers.start_postgres) as server:
        yield server


@pytest.fixture(scope="session")
def tinyproxy() -> Iterator[servers.Server]:
    """A tinyproxy forward proxy for the whole session."""
    with servers.running(servers.start_tinyproxy) as server:
        yield server


@pytest.fixture(scope="session")
def tinyproxy_open() -> Iterator[servers.Server]:
    """A tinyproxy allowing CONNECT to any port; it wants Basic auth as ``agent`` / ``pr0xy``."""
    with servers.running(servers.start_tinyproxy_open, ("agent", "pr0xy")) as server:
        yield server


@pytest.fixture(scope="session")
def keysvc_server(fake_gcs: servers.Server) -> Iterator[servers.Server]:
    """A real `keysvc serve` (SQLite, regions eu and us) against the session's fake-gcs-server."""
    with servers.running(servers.start_keysvc, fake_gcs.url) as server:
        yield server
