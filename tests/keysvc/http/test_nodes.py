"""Unit tests of the provisioner endpoints: AddNode and node terminated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keysvc.core.models import KeyState
from keysvc.files.credentials import create_credential
from keysvc.wire import keyformat
from keysvc.wire.results import Success
from tests.keysvc.http_harness import INSTANCE, T0, Harness, build


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    """A fresh in-process app."""
    yield from build(tmp_path)


def test_add_node_answers_the_contract(h: Harness) -> None:
    """AddNode returns the key once, its id, expiry in both forms, the region endpoint and user data."""
    body = h.new_key()
    assert set(body) == {
        "key",
        "key_id",
        "expires_at",
        "expires_at_unix",
        "endpoint",
        "user_data",
        "superseded",
    }
    parsed = keyformat.parse(body["key"])
    assert isinstance(parsed, Success)
    assert parsed.value.key_id == body["key_id"]
    assert body["expires_at_unix"] == T0 + 3600
    assert body["expires_at"] == "2027-01-15T09:00:00Z"
    assert body["endpoint"] == "https://keysvc.eu.test"
    assert body["user_data"].startswith("#cloud-config")
    assert "NODELOGS_ENDPOINT=https://keysvc.eu.test" in body["user_data"]
    assert f"NODELOGS_KEY_EXPIRES_AT={int(T0) + 3600}" in body["user_data"]
    assert body["superseded"] == []
    assert h.metrics.keys_issued.value() == 1


def test_started_at_accepts_rfc3339(h: Harness) -> None:
    """An RFC 3339 start time gives the same expiry as the Unix seconds it names."""
    body = h.new_key(started_at="2027-01-15T08:00:00Z")
    assert body["expires_at_unix"] == T0 + 3600


@pytest.mark.parametrize(
    "started_at", ["2027-01-15", "2027-01-15T08:00:00", "yesterday", "2027-13-45T08:00:00Z"]
)
def test_bad_started_at_is_400(h: Harness, started_at: str) -> None:
    """A start time without a zone, a time or a valid date is invalid input."""
    response = h.add_node(started_at=started_at)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


def test_retry_supersedes_the_first_key(h: Harness) -> None:
    """A retried AddNode answers a fresh key and reports the earlier one superseded."""
    first = h.new_key()
    second = h.new_key()
    assert second["superseded"] == [first["key_id"]]
    assert h.service.get_key(first["key_id"]).state is KeyState.REVOKED
    assert h.metrics.revocations.value("superseded") == 1


def test_operation_id_reuse_with_other_parameters_is_409(h: Harness) -> None:
    """The same operation id for another node is a conflict."""
    h.new_key()
    response = h.add_node(node="node-2.ec2.internal")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("region", "mars"),
        ("cluster", "Prod_1"),
        ("node", "-bad"),
        ("instance", "i-xyz"),
        ("operation_id", "a b"),
    ],
)
def test_invalid_ids_are_400_and_write_nothing(h: Harness, field: str, value: str) -> None:
    """An unknown region or a malformed id is refused with 400 and leaves no key and no audit record."""
    response = h.add_node(**{field: value})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"
    assert h.service.list_keys() == []
    assert h.audit() == []


def test_add_node_needs_the_provisioner_scope(h: Harness) -> None:
    """An admin token cannot add nodes (403, audited), and no token at all is 401."""
    body = {
        "cluster": "c",
        "node": "n",
        "instance": INSTANCE,
        "region": "eu",
        "operation_id": "o",
        "started_at": T0,
    }
    assert h.client.post("/v1/nodes", json=body, headers=h.bearer("admin")).status_code == 403
    missing = h.client.post("/v1/nodes", json=body)
    assert missing.status_code == 401
    assert missing.json() == {"error": "unauthorized", "message": "the credential was refused"}
    assert [reason for reason, _ in h.refusals()] == ["out_of_scope", "missing_credential"]
    assert h.service.list_keys() == []


def test_terminated_by_instance_revokes(h: Harness) -> None:
    """Node terminated by instance id revokes the node's live key, once."""
    key_id = h.new_key()["key_id"]
    first = h.client.post(
        "/v1/nodes/terminated", json={"instance": INSTANCE}, headers=h.bearer("provisioner")
    )
    assert first.status_code == 200
    assert first.json() == {"revoked": [key_id]}
    again = h.client.post(
        "/v1/nodes/terminated", json={"instance": INSTANCE}, headers=h.bearer("provisioner")
    )
    assert again.json() == {"revoked": []}
    assert h.service.get_key(key_id).end_reason == "terminated"


def test_terminated_by_cluster_and_node_revokes_only_that_node(h: Harness) -> None:
    """Cluster plus node revokes that node's key and leaves the same node name in another cluster alone."""
    mine = h.new_key()["key_id"]
    other = h.new_key(cluster="staging", operation_id="op-2", instance="i-0123456789abcdef1")["key_id"]
    body = {"cluster": "prod", "node": "node-1.ec2.internal", "reason": "scale-in"}
    response = h.client.post("/v1/nodes/terminated", json=body, headers=h.bearer("provisioner"))
    assert response.json() == {"revoked": [mine]}
    assert h.service.get_key(mine).end_reason == "scale-in"
    assert h.service.get_key(other).state is KeyState.LIVE


@pytest.mark.parametrize(
    "body",
    [{}, {"cluster": "prod"}, {"instance": INSTANCE, "cluster": "prod", "node": "n"}, {"node": "n"}],
)
def test_terminated_needs_exactly_one_selector(h: Harness, body: dict[str, str]) -> None:
    """Terminated with no selector, half a selector or two selectors is 422."""
    response = h.client.post("/v1/nodes/terminated", json=body, headers=h.bearer("provisioner"))
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


OTHER_INSTANCE = "i-0fedcba9876543210"
BIND = {"cluster": "prod", "node": "node-1.ec2.internal", "instance": INSTANCE}


def _add_unbound(h: Harness, **overrides: Any) -> dict[str, Any]:
    """AddNode without the instance field, as a provisioner before RunInstances."""
    body = {
        "cluster": "prod",
        "node": "node-1.ec2.internal",
        "region": "eu",
        "operation_id": "op-1",
        "started_at": T0,
        **overrides,
    }
    response = h.client.post("/v1/nodes", json=body, headers=h.bearer("provisioner"))
    assert response.status_code == 201, response.text
    added: dict[str, Any] = response.json()
    return added


def test_add_node_without_instance_then_bind(h: Harness) -> None:
    """AddNode may leave the instance out (or null); the bind then answers the key id and instance."""
    added = _add_unbound(h)
    shown = h.client.get(f"/v1/admin/keys/{added['key_id']}", headers=h.bearer("admin")).json()
    assert shown["instance"] is None
    response = h.client.post("/v1/nodes/instance", json=BIND, headers=h.bearer("provisioner"))
    assert response.status_code == 200
    assert response.json() == {"key_id": added["key_id"], "instance": INSTANCE}
    shown = h.client.get(f"/v1/admin/keys/{added['key_id']}", headers=h.bearer("admin")).json()
    assert shown["instance"] == INSTANCE
    [bound] = h.client.get("/v1/admin/audit", params={"event": "bound"}, headers=h.bearer("admin")).json()[
        "records"
    ]
    assert (bound["key_id"], bound["instance"]) == (added["key_id"], INSTANCE)
    assert bound["actor"] == "credential:prov"
    terminated = h.client.post(
        "/v1/nodes/terminated", json={"instance": INSTANCE}, headers=h.bearer("provisioner")
    )
    assert terminated.json() == {"revoked": [added["key_id"]]}


def test_add_node_with_null_instance_is_unbound(h: Harness) -> None:
    """An explicit null instance is the same as leaving it out."""
    added = h.new_key(instance=None)
    assert h.service.get_key(added["key_id"]).instance is None


def test_bind_again_is_idempotent_and_another_instance_is_409(h: Harness) -> None:
    """A repeated bind answers 200 with no new audit record; another instance is 409 and changes nothing."""
    added = _add_unbound(h)
    for _ in range(2):
        response = h.client.post("/v1/nodes/instance", json=BIND, headers=h.bearer("provisioner"))
        assert response.json() == {"key_id": added["key_id"], "instance": INSTANCE}
    other = h.client.post(
        "/v1/nodes/instance", json={**BIND, "instance": OTHER_INSTANCE}, headers=h.bearer("provisioner")
    )
    assert other.status_code == 409
    assert other.json()["error"] == "conflict"
    assert [r.event.event.value for r in h.audit()] == ["issued", "bound"]
    assert h.service.get_key(added["key_id"]).instance == INSTANCE


def test_bind_without_live_key_is_404(h: Harness) -> None:
    """A bind for a node with no live key is 404 and writes nothing."""
    response = h.client.post("/v1/nodes/instance", json=BIND, headers=h.bearer("provisioner"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert h.audit() == []


@pytest.mark.parametrize(
    "body",
    [
        {"cluster": "prod", "node": "node-1.ec2.internal"},
        {**BIND, "instance": None},
        {**BIND, "instance": 7},
        {**BIND, "extra": "field"},
        {**BIND, "instance": "i-" + "0" * 30},
    ],
)
def test_bind_bad_body_is_422(h: Harness, body: dict[str, Any]) -> None:
    """A missing, null, mistyped, unknown or overlong field is 422 and binds nothing."""
    _add_unbound(h)
    response = h.client.post("/v1/nodes/instance", json=body, headers=h.bearer("provisioner"))
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert h.service.list_keys()[0].instance is None


def test_bind_malformed_instance_is_400(h: Harness) -> None:
    """An instance id of the right length but the wrong shape is invalid input (400)."""
    _add_unbound(h)
    response = h.client.post(
        "/v1/nodes/instance", json={**BIND, "instance": "i-xyz"}, headers=h.bearer("provisioner")
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


def test_bind_needs_the_nodes_add_scope(h: Harness, tmp_path: Path) -> None:
    """An admin token cannot bind (403, audited) and no token is 401; a terminate-only token is 403 too."""
    _add_unbound(h)
    assert h.client.post("/v1/nodes/instance", json=BIND, headers=h.bearer("admin")).status_code == 403
    assert h.client.post("/v1/nodes/instance", json=BIND).status_code == 401
    token = create_credential(h.credentials_file, name="term", scopes=["nodes:terminate"], now=T0)[1]
    refused = h.client.post("/v1/nodes/instance", json=BIND, headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert h.service.list_keys()[0].instance is None


def test_bind_route_is_in_the_openapi_document(h: Harness) -> None:
    """The OpenAPI document describes the bind route, its body and its 404 and 409 answers."""
    document = h.client.get("/openapi.json").json()
    operation = document["paths"]["/v1/nodes/instance"]["post"]
    assert {"200", "404", "409", "422"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["BindInstanceRequest"]
    assert set(schema["required"]) == {"cluster", "node", "instance"}
    assert "instance" not in document["components"]["schemas"]["AddNodeRequest"]["required"]


def test_operation_id_holding_a_key_is_400_and_never_audited(h: Harness) -> None:
    """An AddNode whose operation id is an ingest key is refused and the key reaches no record."""
    key = h.new_key()["key"]
    before = h.audit()
    response = h.add_node(operation_id=key)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"
    assert key not in response.text
    assert h.audit() == before
    assert all(rec.operation_id != key for rec in h.service.list_keys())
