"""Fixtures for keysvc unit tests: a fresh store per test, parametrized over the store backends.

The store contract suite runs over every store (memory, SQLite, PostgreSQL); the service's own
suite runs over the in-memory store and SQLite, so it needs no database server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keysvc.core.clock import ManualClock
from keysvc.core.models import Region
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService
from keysvc.service.ports import Store
from keysvc.store import open_store
from keysvc.store.memory import MemoryStore
from tests import servers

STORE_BACKENDS = ["memory", "sqlite", "postgres"]
"""Store backends the store contract suite runs against."""
SERVICE_BACKENDS = ["memory", "sqlite"]
"""Store backends the service suite runs against: no database server needed."""
REGIONS = {
    "eu": Region(name="eu", bucket="nodelogs-eu", prefix="nodelogs", endpoint="https://keysvc.eu.test"),
    "us": Region(name="us", bucket="nodelogs-us", prefix="logs/us", endpoint="https://keysvc.us.test"),
}


@dataclass
class RecordingSigner:
    """An in-memory stand-in for the URL signer port: records each request, returns a fake URL."""

    signed: list[dict[str, object]] = field(default_factory=list)

    def sign_put(
        self, *, bucket: str, object_name: str, headers: Mapping[str, str], signed_at: int, expires_in: int
    ) -> str:
        """Record the request and return a URL that names it."""
        self.signed.append(
            {"bucket": bucket, "object": object_name, "headers": dict(headers), "expires_in": expires_in}
        )
        return f"https://signed.test/{bucket}/{object_name}?at={signed_at}&for={expires_in}"

    def check_ready(self) -> None:
        """Always ready."""


def _open_sqlite(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/state/keysvc.db")


STORE_OPENERS: dict[str, Callable[[Path], Store]] = {
    "sqlite": _open_sqlite,
    "memory": lambda _: MemoryStore(),
}


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


@pytest.fixture(params=SERVICE_BACKENDS)
def service_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A freshly migrated, empty store for the service suite: in memory, or SQLite."""
    opened = STORE_OPENERS[request.param](tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def service(service_store: Store, signer: AuditSigner, clock: ManualClock) -> KeyService:
    """The key service over a fresh store with a manual clock, serving regions ``eu`` and ``us``."""
    return KeyService(service_store, signer, clock, regions=REGIONS)


@pytest.fixture
def ingest(service: KeyService, clock: ManualClock) -> IngestService:
    """The ingest service over the key service's store, signing with a recording stand-in signer."""
    return ingest_for(service, clock)


def ingest_for(service: KeyService, clock: ManualClock) -> IngestService:
    """An ingest service over ``service``'s store and audit trail, with the recording signer."""
    return IngestService(service.store, service.audit, clock, signer=RecordingSigner(), regions=REGIONS)
