"""Fixtures for keysvc unit tests: a fresh store per test, parametrized over the store backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keysvc.audit_signing import AuditSigner
from keysvc.clock import ManualClock
from keysvc.service import KeyService
from keysvc.store import Store, open_store
from tests import servers

STORE_BACKENDS = ["sqlite", "postgres"]
"""Store backends the store and service suites run against."""


def _open_sqlite(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/state/keysvc.db")


STORE_OPENERS: dict[str, Callable[[Path], Store]] = {"sqlite": _open_sqlite}


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A freshly migrated, empty store of each backend."""
    if request.param == "postgres":
        yield from _postgres_store(request.getfixturevalue("postgres"))
        return
    opened = STORE_OPENERS[request.param](tmp_path)
    yield opened
    opened.close()


def _postgres_store(server: servers.Server) -> Iterator[Store]:
    """A fresh database on the session's PostgreSQL, dropped after the test."""
    name = f"keysvc_{uuid.uuid4().hex[:16]}"
    servers.wait_for_postgres(server)
    opened = open_store(servers.create_database(server, name))
    try:
        yield opened
    finally:
        opened.close()
        servers.drop_database(server, name)


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when told to."""
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def signer() -> AuditSigner:
    """An in-memory audit signing key."""
    return AuditSigner.generate()


@pytest.fixture
def service(store: Store, signer: AuditSigner, clock: ManualClock) -> KeyService:
    """The key service over a fresh store with a manual clock."""
    return KeyService(store, signer, clock)
