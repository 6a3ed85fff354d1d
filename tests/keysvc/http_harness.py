"""An in-process keysvc HTTP app for unit tests: the real service on SQLite in a temp dir, a manual
clock, a real V4 signer and real credentials. Requests go through Starlette's TestClient (no network)."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from keysvc.config import ServerConfig, Settings
from keysvc.core.clock import ManualClock
from keysvc.core.models import AuditRecord, Region
from keysvc.files.credentials import CredentialFile, create_credential
from keysvc.files.private_files import write_private
from keysvc.gcs.url_signing import GcsUrlSigner, new_service_account_file
from keysvc.http import create_app
from keysvc.http.ratelimit import FailureLimiter
from keysvc.metrics import Metrics
from keysvc.runtime import open_ingest, open_service
from keysvc.service.keys import KeyService

T0 = 1_800_000_000.0
INSTANCE = "i-0123456789abcdef0"
SUFFIX = "var-log-cloud-init.log-0a1b2c3d/g000001/0000000000000000-0000000000000100.gz"
GCS = "http://127.0.0.1:4443"


@dataclass
class Harness:
    """The app, its collaborators and tokens of every kind."""

    client: TestClient
    service: KeyService
    clock: ManualClock
    settings: Settings
    metrics: Metrics
    service_account: Path
    credentials_file: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def bearer(self, who: str) -> dict[str, str]:
        """Authorization header for a named token."""
        return {"authorization": f"Bearer {self.tokens[who]}"}

    def add_node(self, **overrides: Any) -> httpx.Response:
        """POST an AddNode as the provisioner."""
        body = {
            "cluster": "prod",
            "node": "node-1.ec2.internal",
            "instance": INSTANCE,
            "region": "eu",
            "operation_id": "op-1",
            "started_at": T0,
            **overrides,
        }
        return self.client.post("/v1/nodes", json=body, headers=self.bearer("provisioner"))

    def new_key(self, **overrides: Any) -> dict[str, Any]:
        """AddNode and return the 201 body."""
        response = self.add_node(**overrides)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def grant(
        self, key: str, names: list[str], *, cluster: str = "prod", node: str = "node-1.ec2.internal",
        region: str = "eu",
    ) -> httpx.Response:  # fmt: skip
        """Ask for upload URLs with an ingest key."""
        body = {"cluster": cluster, "node": node, "region": region, "objects": [{"name": n} for n in names]}
        return self.client.post("/v1/ingest/grants", json=body, headers={"authorization": f"Bearer {key}"})

    def audit(self) -> list[AuditRecord]:
        """Every audit record so far."""
        return self.service.audit.records()

    def refusals(self) -> list[tuple[str | None, str | None]]:
        """(reason, key id) of every refused record."""
        return [(r.event.reason, r.event.key_id) for r in self.audit() if r.event.event.value == "refused"]


@functools.cache
def _service_account_bytes() -> bytes:
    """One freshly generated service-account file per test process (RSA key generation is slow)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "sa.json"
        new_service_account_file(path, email="keysvc@test.iam.gserviceaccount.com")
        return path.read_bytes()


def build(tmp_path: Path, *, server: ServerConfig | None = None, burst: int = 5) -> Iterator[Harness]:
    """Build a harness in ``tmp_path``; a generator for use in fixtures."""
    state = tmp_path / "state"
    service_account = state / "service-account.json"
    state.mkdir(mode=0o700, parents=True)
    write_private(service_account, _service_account_bytes())
    credentials = state / "credentials.toml"
    base = Settings()
    settings = replace(
        base,
        state=replace(
            base.state, database=f"sqlite:///{state}/keysvc.db", audit_signing_key=state / "audit.pem"
        ),
        server=replace(server or base.server, credentials_file=credentials),
        regions={
            "eu": Region(
                name="eu", bucket="nodelogs-eu", prefix="nodelogs", endpoint="https://keysvc.eu.test"
            ),
            "us": Region(
                name="us", bucket="nodelogs-us", prefix="logs/us", endpoint="https://keysvc.us.test"
            ),
        },
    )
    tokens = {
        "provisioner": create_credential(
            credentials, name="prov", scopes=["nodes:add", "nodes:terminate"], now=T0
        )[1],
        "admin": create_credential(credentials, name="ops", scopes=["admin:read", "admin:revoke"], now=T0)[1],
        "reader": create_credential(credentials, name="auditor", scopes=["admin:read"], now=T0)[1],
    }
    clock = ManualClock(T0)
    service = open_service(settings, clock=clock, create=True)
    metrics = Metrics()
    app = create_app(
        service,
        open_ingest(settings, service, signer=GcsUrlSigner(service_account, GCS), clock=clock),
        settings,
        CredentialFile(credentials),
        clock=clock,
        limiter=FailureLimiter(burst=burst, per_second=0.5),
        metrics=metrics,
    )
    with TestClient(app, raise_server_exceptions=False, client=("10.0.0.1", 40000)) as client:
        yield Harness(client, service, clock, settings, metrics, service_account, credentials, tokens)
    service.close()
