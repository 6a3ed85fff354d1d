"""Unit tests of the provisioner endpoints: AddNode and node terminated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keysvc import keyformat
from keysvc.checks import Success
from keysvc.models import KeyState
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
