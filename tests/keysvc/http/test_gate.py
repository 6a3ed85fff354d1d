"""Unit tests of request screening: body size, content type, malformed bodies, misused keys, rate limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.keysvc.http_harness import INSTANCE, SUFFIX, T0, Harness, build

ADD = {
    "cluster": "c",
    "node": "n",
    "instance": INSTANCE,
    "region": "eu",
    "operation_id": "o",
    "started_at": T0,
}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    """A fresh in-process app with a burst of 5 failed authentications per source."""
    yield from build(tmp_path, burst=5)


def nothing_written(h: Harness) -> None:
    """No key and no audit record exist."""
    assert h.service.list_keys() == []
    assert h.audit() == []


def test_oversized_body_is_413(h: Harness) -> None:
    """A body over max_body_bytes is refused before parsing."""
    big = json.dumps({**ADD, "operation_id": "x" * (h.settings.server.max_body_bytes + 1)})
    response = h.client.post(
        "/v1/nodes", content=big, headers={**h.bearer("provisioner"), "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    nothing_written(h)


def test_oversized_chunked_body_is_413(h: Harness) -> None:
    """A chunked body without Content-Length is counted as it arrives and refused past the bound."""

    def chunks() -> Iterator[bytes]:
        yield b'{"cluster": "'
        for _ in range(100):
            yield b"a" * 1024

    headers = {**h.bearer("provisioner"), "content-type": "application/json"}
    response = h.client.post("/v1/nodes", content=chunks(), headers=headers)
    assert response.status_code == 413
    nothing_written(h)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(h: Harness, content_type: str | None) -> None:
    """A POST body that is not declared JSON is refused."""
    headers = h.bearer("provisioner")
    if content_type:
        headers["content-type"] = content_type
    response = h.client.post("/v1/nodes", content=json.dumps(ADD), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert h.metrics.request_seconds.count("POST", "/v1/nodes", "415") == 1
    nothing_written(h)


def test_json_with_charset_is_accepted(h: Harness) -> None:
    """application/json with a charset parameter is JSON."""
    headers = {**h.bearer("provisioner"), "content-type": "application/json; charset=utf-8"}
    response = h.client.post("/v1/nodes", content=json.dumps(ADD), headers=headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ("[1, 2]", 422, "invalid_request"),
        (json.dumps({**ADD, "extra": 1}), 422, "invalid_request"),
        (json.dumps({**ADD, "cluster": 7}), 422, "invalid_request"),
        (json.dumps({**ADD, "started_at": True}), 422, "invalid_request"),
        (json.dumps({**ADD, "started_at": "NaN"}), 400, "invalid_input"),
        (json.dumps(ADD).replace(str(T0), "NaN"), 422, "invalid_request"),
        (json.dumps(ADD).replace(str(T0), "1e999"), 422, "invalid_request"),
        ("", 422, "invalid_request"),
    ],
)
def test_malformed_bodies_are_4xx_json(h: Harness, raw: str, status: int, code: str) -> None:
    """Malformed JSON, wrong shapes, unknown fields, wrong types and non-finite numbers: 4xx, no writes."""
    headers = {**h.bearer("provisioner"), "content-type": "application/json"}
    response = h.client.post("/v1/nodes", content=raw, headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, code)
    nothing_written(h)


def test_errors_never_echo_input(h: Harness) -> None:
    """A validation error does not repeat what the caller sent, even a key in an unknown field."""
    key = h.new_key()["key"]
    body = {"cluster": "c", "node": "n", "region": "eu", "objects": [], "smuggled": key}
    response = h.client.post("/v1/ingest/grants", json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 422
    assert key not in response.text


def test_errors_never_echo_an_unknown_field_name(h: Harness) -> None:
    """A key or any other text sent as the name of an unknown field is not repeated in the 422 message."""
    key = h.new_key()["key"]
    body = {"cluster": "c", "node": "n", "region": "eu", "objects": [{"name": "x", "q" * 40: 1}], key: 1}
    response = h.client.post("/v1/ingest/grants", json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert key not in response.text
    assert "q" * 40 not in response.text
    assert "unknown field" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/nodes"),
        ("GET", "/healthz"),
        ("GET", "/v1/admin/audit/verify"),
    ],
)
def test_ingest_key_elsewhere_is_403_and_audited(h: Harness, method: str, path: str) -> None:
    """An ingest key anywhere but the grant endpoint is a 403, audited as out_of_scope with its key id."""
    key = h.new_key()
    response = h.client.request(method, path, json=ADD, headers={"authorization": f"Bearer {key['key']}"})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert key["key"] not in response.text
    assert h.refusals() == [("out_of_scope", key["key_id"])]
    assert len(h.service.list_keys()) == 1


def test_brute_force_gets_429_and_other_sources_do_not(h: Harness) -> None:
    """After the burst a source gets 429 with Retry-After, even with a good token; other addresses do not."""
    bad = {"authorization": "Bearer nlt1_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}
    statuses = [h.client.get("/v1/admin/keys", headers=bad).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    limited = h.client.get("/v1/admin/keys", headers=h.bearer("admin"))
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    other = TestClient(h.client.app, client=("10.9.9.9", 1234))
    assert other.get("/v1/admin/keys", headers=h.bearer("admin")).status_code == 200
    reasons = [reason for reason, _ in h.refusals()]
    assert reasons == ["unknown"] * 5 + ["rate_limited"]
    h.clock.advance(2)
    assert h.client.get("/v1/admin/keys", headers=h.bearer("admin")).status_code == 200


def test_ingest_brute_force_is_limited_too(h: Harness) -> None:
    """Guessing ingest keys at the grant endpoint runs into the same limit."""
    body = {"cluster": "c", "node": "n", "region": "eu", "objects": [{"name": SUFFIX}]}
    statuses = [
        h.client.post("/v1/ingest/grants", json=body, headers={"authorization": "Bearer nlk1_x"}).status_code
        for _ in range(7)
    ]
    assert statuses == [401] * 5 + [429] * 2


def test_unrouted_methods_get_405_not_415(h: Harness) -> None:
    """A method no route serves is answered by the router (405), whatever its content type."""
    response = h.client.put("/healthz", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
