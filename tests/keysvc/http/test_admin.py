"""Unit tests of the admin endpoints, health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keysvc.errors import StoreUnavailable
from tests.keysvc.http_harness import INSTANCE, SUFFIX, Harness, build


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    """A fresh in-process app."""
    yield from build(tmp_path, burst=50)


def test_list_and_show_keys(h: Harness) -> None:
    """Admins list keys with filters and show one; no hash or secret is ever in the answer."""
    first = h.new_key()
    second = h.new_key(cluster="staging", operation_id="op-2")
    listed = h.client.get("/v1/admin/keys", headers=h.bearer("admin")).json()["keys"]
    assert {k["key_id"] for k in listed} == {first["key_id"], second["key_id"]}
    only = h.client.get("/v1/admin/keys?cluster=staging&state=live", headers=h.bearer("reader")).json()[
        "keys"
    ]
    assert [k["key_id"] for k in only] == [second["key_id"]]
    shown = h.client.get(f"/v1/admin/keys/{first['key_id']}", headers=h.bearer("reader")).json()
    assert shown["state"] == "live"
    assert "key_hash" not in shown
    assert first["key"] not in str(listed)


def test_show_unknown_key_is_404_and_bad_id_is_400(h: Harness) -> None:
    """An unknown key id is 404; a malformed one is 400."""
    assert h.client.get("/v1/admin/keys/aaaaaaaaaaaaaaaa", headers=h.bearer("admin")).status_code == 404
    assert h.client.get("/v1/admin/keys/NOT-AN-ID", headers=h.bearer("admin")).status_code == 400


def test_bad_state_filter_is_422(h: Harness) -> None:
    """An unknown state value is a validation error."""
    assert h.client.get("/v1/admin/keys?state=zombie", headers=h.bearer("admin")).status_code == 422


def test_revoke_one_key(h: Harness) -> None:
    """Admins revoke a key by id; it is then refused at the grant endpoint."""
    key = h.new_key()
    path = f"/v1/admin/keys/{key['key_id']}/revoke"
    response = h.client.post(path, json={"reason": "compromised"}, headers=h.bearer("admin"))
    assert response.json() == {"revoked": [key["key_id"]]}
    assert h.grant(key["key"], [SUFFIX]).status_code == 401
    assert h.metrics.revocations.value("admin") == 1


def test_reader_cannot_revoke(h: Harness) -> None:
    """admin:read alone does not allow revocation (403) and nothing changes."""
    key = h.new_key()
    path = f"/v1/admin/keys/{key['key_id']}/revoke"
    assert h.client.post(path, json={"reason": "x"}, headers=h.bearer("reader")).status_code == 403
    assert h.service.get_key(key["key_id"]).state.value == "live"


@pytest.mark.parametrize(
    "selector",
    [
        {"cluster": "prod"},
        {"cluster": "prod", "node": "node-1.ec2.internal"},
        {"instance": INSTANCE},
        "key_id",
    ],
)
def test_revocations_by_each_selector(h: Harness, selector: dict[str, str] | str) -> None:
    """Revocation by cluster, node of a cluster, instance or key id revokes the matching key."""
    key = h.new_key()
    body = {"key_id": key["key_id"]} if selector == "key_id" else dict(selector)
    response = h.client.post(
        "/v1/admin/revocations", json={**body, "reason": "ops"}, headers=h.bearer("admin")
    )
    assert response.json() == {"revoked": [key["key_id"]]}


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "x"},
        {"node": "n", "reason": "x"},
        {"cluster": "c", "instance": INSTANCE, "reason": "x"},
        {"cluster": "c"},
    ],
)
def test_revocations_need_exactly_one_selector_and_a_reason(h: Harness, body: dict[str, str]) -> None:
    """No selector, a node without its cluster, two selectors or no reason are 422."""
    assert h.client.post("/v1/admin/revocations", json=body, headers=h.bearer("admin")).status_code == 422


def test_audit_reads_and_verifies(h: Harness) -> None:
    """The audit log is filterable and limited, and its chain verifies."""
    key = h.new_key()
    h.grant(key["key"], [SUFFIX])
    records = h.client.get("/v1/admin/audit", headers=h.bearer("reader")).json()["records"]
    assert [r["event"] for r in records] == ["issued", "used"]
    assert records[1]["source"] == "10.0.0.1"
    assert all(len(r["record_hash"]) == 64 for r in records)
    limited = h.client.get("/v1/admin/audit?limit=1&event=issued", headers=h.bearer("reader")).json()[
        "records"
    ]
    assert [r["event"] for r in limited] == ["issued"]
    verify = h.client.get("/v1/admin/audit/verify", headers=h.bearer("reader")).json()
    assert verify["ok"] is True
    assert verify["detail"]["records"] == 2


def test_provisioner_cannot_read_admin(h: Harness) -> None:
    """The provisioner token lacks admin scopes: 403."""
    assert h.client.get("/v1/admin/audit", headers=h.bearer("provisioner")).status_code == 403


def test_health_and_readiness(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz is always 200; /readyz is 503 when the store is unreachable."""
    assert h.client.get("/healthz").json() == {"status": "ok"}
    assert h.client.get("/readyz").status_code == 200

    def down() -> None:
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(h.service, "check_ready", down)
    response = h.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


def test_store_unavailable_during_add_node_is_503(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store outage surfaces as 503, never as a 500."""

    def down(*_args: object, **_kwargs: object) -> None:
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(h.service, "add_node", down)
    assert h.add_node().status_code == 503


def test_readiness_needs_the_signer(tmp_path: Path) -> None:
    """Without a loadable service-account file, /readyz is 503."""
    for h in build(tmp_path):
        h.service_account.unlink()
        response = h.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"] == "signer_unavailable"


def test_metrics_exposition(h: Harness) -> None:
    """/metrics serves Prometheus text with issued keys, grants, refusals and latency by route template."""
    key = h.new_key()
    h.grant(key["key"], [SUFFIX])
    h.grant("nlk1_bad", [SUFFIX])
    response = h.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "keysvc_keys_issued_total 1" in text
    assert "keysvc_grants_total 1" in text
    assert 'keysvc_refusals_total{reason="malformed"} 1' in text
    assert (
        'keysvc_http_request_duration_seconds_count{method="POST",route="/v1/ingest/grants",status="200"} 1'
        in text
    )


def test_openapi_documents_every_endpoint(h: Harness) -> None:
    """The OpenAPI document lists every path of the contract with its error answers."""
    spec = h.client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/v1/nodes",
        "/v1/nodes/terminated",
        "/v1/ingest/grants",
        "/v1/admin/keys",
        "/v1/admin/keys/{key_id}",
        "/v1/admin/keys/{key_id}/revoke",
        "/v1/admin/revocations",
        "/v1/admin/audit",
        "/v1/admin/audit/verify",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    grant = spec["paths"]["/v1/ingest/grants"]["post"]
    assert {"200", "400", "401", "413", "415", "422", "429"} <= set(grant["responses"])
    assert spec["components"]["schemas"]["GrantRequest"]["additionalProperties"] is False
