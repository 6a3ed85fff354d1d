"""A real `keysvc serve`: AddNode without an instance, RunInstances (played), bind the instance, terminate."""

from __future__ import annotations

import time
import uuid

import pytest

from tests import servers
from tests.integration.service_client import SUFFIX, audit, bearer, client, grant, unique

pytestmark = pytest.mark.integration

NODE = "ip-10-0-0-1.ec2.internal"


def test_add_node_then_bind_then_terminate(keysvc_server: servers.Server) -> None:
    """Before the bind a termination by instance finds nothing; after it, it revokes the key the node uses."""
    cluster = unique("bind")
    instance = f"i-{uuid.uuid4().hex[:17]}"
    provisioner = bearer(keysvc_server.extra["provisioner"])
    with client("127.0.0.41") as http:
        body = {
            "cluster": cluster,
            "node": NODE,
            "region": "eu",
            "operation_id": f"op-{uuid.uuid4().hex}",
            "started_at": time.time(),
        }
        added = http.post(f"{keysvc_server.url}/v1/nodes", json=body, headers=provisioner)
        assert added.status_code == 201, added.text
        key, key_id = added.json()["key"], added.json()["key_id"]
        names = [SUFFIX.format(start=0, end=10)]
        assert grant(http, keysvc_server, key, cluster, names).status_code == 200

        terminated = f"{keysvc_server.url}/v1/nodes/terminated"
        early = http.post(terminated, json={"instance": instance}, headers=provisioner)
        assert early.json() == {"revoked": []}

        bind = {"cluster": cluster, "node": NODE, "instance": instance}
        url = f"{keysvc_server.url}/v1/nodes/instance"
        for _ in range(2):
            bound = http.post(url, json=bind, headers=provisioner)
            assert bound.status_code == 200, bound.text
            assert bound.json() == {"key_id": key_id, "instance": instance}
        elsewhere = http.post(url, json={**bind, "instance": "i-0fedcba9876543210"}, headers=provisioner)
        assert elsewhere.status_code == 409

        shown = http.get(
            f"{keysvc_server.url}/v1/admin/keys/{key_id}", headers=bearer(keysvc_server.extra["admin"])
        )
        assert shown.json()["instance"] == instance
        records = audit(http, keysvc_server, cluster=cluster)
        assert [r["event"] for r in records] == ["issued", "used", "bound"]
        assert records[2]["instance"] == instance

        late = http.post(terminated, json={"instance": instance}, headers=provisioner)
        assert late.json() == {"revoked": [key_id]}
        assert grant(http, keysvc_server, key, cluster, names).status_code == 401
        assert http.post(url, json=bind, headers=provisioner).status_code == 404
