"""Small HTTP helpers for the keysvc integration tests (real processes, real sockets)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests import servers

SUFFIX = "var-log-cloud-init-output.log-1f2e3d4c/g000001/{start:016d}-{end:016d}.gz"


def unique(prefix: str = "c") -> str:
    """A cluster name no other test uses, so tests sharing a server and bucket never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client(source: str = "127.0.0.1", timeout: float = 10.0) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (any 127.0.0.0/8 address works on Linux)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout)


def add_node(
    http: httpx.Client,
    server: servers.Server,
    cluster: str,
    node: str = "ip-10-0-0-1.ec2.internal",
    *,
    region: str = "eu",
    instance: str | None = None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """AddNode as the provisioner; returns the 201 body."""
    body = {
        "cluster": cluster,
        "node": node,
        "instance": instance or f"i-{uuid.uuid4().hex[:17]}",
        "region": region,
        "operation_id": f"op-{uuid.uuid4().hex}",
        "started_at": time.time() if started_at is None else started_at,
    }
    response = http.post(f"{server.url}/v1/nodes", json=body, headers=bearer(server.extra["provisioner"]))
    assert response.status_code == 201, response.text
    added: dict[str, Any] = response.json()
    return added


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"authorization": f"Bearer {token}"}


def grant(
    http: httpx.Client, server: servers.Server, key: str, cluster: str, names: list[str], *,
    node: str = "ip-10-0-0-1.ec2.internal", region: str = "eu",
) -> httpx.Response:  # fmt: skip
    """Ask for upload URLs."""
    body = {"cluster": cluster, "node": node, "region": region, "objects": [{"name": n} for n in names]}
    return http.post(f"{server.url}/v1/ingest/grants", json=body, headers=bearer(key))


def audit(http: httpx.Client, server: servers.Server, **query: str) -> list[dict[str, Any]]:
    """Audit records matching ``query``, read with the admin token."""
    response = http.get(f"{server.url}/v1/admin/audit", params=query, headers=bearer(server.extra["admin"]))
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


def counts(http: httpx.Client, server: servers.Server) -> tuple[int, int]:
    """(number of keys, number of audit records) on the server."""
    keys = http.get(f"{server.url}/v1/admin/keys", headers=bearer(server.extra["admin"])).json()["keys"]
    records = audit(http, server, limit="10000")
    return len(keys), len(records)
