"""Unit tests of the upload-grant endpoint: signed URLs, their properties, and every refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keysvc.wire.keyformat import mint
from tests.keysvc.http_harness import GCS, INSTANCE, SUFFIX, T0, Harness, build
from tests.signed_urls import public_key_of, verify_v4

NODE = "node-1.ec2.internal"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    """A fresh in-process app."""
    yield from build(tmp_path, burst=50)


def test_grant_answers_one_signed_url_per_name(h: Harness) -> None:
    """Each name gets a URL for the region's bucket, under the node's prefix, with the exact headers."""
    key = h.new_key()
    h.clock.advance(10.5)
    names = [
        SUFFIX,
        SUFFIX.replace("0000000000000100.gz", "0000000000000200.gz").replace(
            "-0000000000000000", "-0000000000000100"
        ),
    ]
    response = h.grant(key["key"], names)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["key_id"] == key["key_id"]
    assert body["server_time"] == T0 + 10.5
    assert body["key_expires_at"] == T0 + 3600
    assert body["bucket"] == "nodelogs-eu"
    assert [g["name"] for g in body["grants"]] == names
    public = public_key_of(h.service_account)
    for grant in body["grants"]:
        assert grant["method"] == "PUT"
        assert grant["object"] == f"nodelogs/prod/{NODE}/{grant['name']}"
        assert grant["headers"] == {
            "content-type": "application/gzip",
            "x-goog-if-generation-match": "0",
            "x-goog-content-length-range": f"0,{h.settings.server.max_chunk_bytes}",
        }
        signed = verify_v4(grant["url"], "PUT", grant["headers"], public)
        assert grant["url"].startswith(f"{GCS}/nodelogs-eu/")
        assert (signed.bucket, signed.object_name) == ("nodelogs-eu", grant["object"])
        assert signed.signed_at == int(T0 + 10)
        assert signed.expires_in == 300
        assert grant["expires_at"] == signed.expires_at
    assert h.metrics.grants.value() == 2


def test_empty_objects_is_a_probe(h: Harness) -> None:
    """No names: the answer carries server time and key expiry and no URL."""
    key = h.new_key()
    body = h.grant(key["key"], []).json()
    assert body["grants"] == []
    assert (body["server_time"], body["key_expires_at"]) == (T0, T0 + 3600)


def test_url_lifetime_is_cut_to_the_key(h: Harness) -> None:
    """Near the key's end, the URL (dated from the whole second) expires exactly when the key does."""
    key = h.new_key()
    h.clock.advance(3600 - 42.3)
    grant = h.grant(key["key"], [SUFFIX]).json()["grants"][0]
    signed = verify_v4(grant["url"], "PUT", grant["headers"], public_key_of(h.service_account))
    assert signed.signed_at == int(T0 + 3600 - 42.3)
    assert signed.expires_in == 43
    assert signed.expires_at == T0 + 3600


def test_region_maps_to_its_bucket_and_prefix(h: Harness) -> None:
    """A key minted in region us gets URLs for the us bucket and prefix only."""
    key = h.new_key(region="us", cluster="west", operation_id="op-us")
    body = h.grant(key["key"], [SUFFIX], cluster="west", region="us").json()
    assert body["bucket"] == "nodelogs-us"
    assert body["grants"][0]["object"] == f"logs/us/west/{NODE}/{SUFFIX}"
    assert "/nodelogs-us/logs/us/west/" in body["grants"][0]["url"]


def refused(h: Harness, key: str, **scope: str) -> None:
    """Assert the uniform 401 answer."""
    response = h.grant(key, [SUFFIX], **scope)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "the credential was refused"}


def test_every_key_failure_is_a_uniform_401_with_a_precise_audit(h: Harness) -> None:
    """Malformed, unknown, wrong node, wrong region, revoked and a forged expired key get the same 401."""
    key = h.new_key()
    refused(h, "nlk1_garbage")
    refused(h, mint().key)
    refused(h, key["key"], node="node-2")
    refused(h, key["key"], region="us")
    h.client.post("/v1/nodes/terminated", json={"instance": INSTANCE}, headers=h.bearer("provisioner"))
    refused(h, key["key"])
    other = h.new_key(operation_id="op-2", node="node-3")
    h.clock.advance(3600)
    refused(h, mint(other["key_id"]).key, node="node-3")
    reasons = [reason for reason, _ in h.refusals()]
    assert reasons == ["malformed", "unknown", "out_of_scope", "wrong_region", "revoked", "hash_mismatch"]
    assert h.metrics.grants.value() == 0


def no_claims(h: Harness, key: str) -> httpx.Response:
    """Ask for a session without cluster, node or region, as the current agent does."""
    body = {"objects": [{"name": SUFFIX}]}
    return h.client.post("/v1/ingest/grants", json=body, headers={"authorization": f"Bearer {key}"})


def test_without_claims_the_scope_and_the_answer_come_from_the_key_record(h: Harness) -> None:
    """A request without claims is granted under the key's own node, and the answer names its scope."""
    key = h.new_key()
    response = no_claims(h, key["key"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["cluster"], body["node"], body["region"]) == ("prod", NODE, "eu")
    assert body["grants"][0]["object"] == f"nodelogs/prod/{NODE}/{SUFFIX}"


def test_claims_are_all_three_or_none(h: Harness) -> None:
    """A request naming only some of cluster, node and region is a 422, not a refusal."""
    key = h.new_key()
    body = {"node": NODE, "objects": []}
    response = h.client.post(
        "/v1/ingest/grants", json=body, headers={"authorization": f"Bearer {key['key']}"}
    )
    assert response.status_code == 422
    assert h.refusals() == []


def test_a_proven_expired_key_is_told_so_and_a_forged_one_is_not(h: Harness) -> None:
    """The holder of an expired key gets 401 key_expired; a forged secret for its id gets the uniform 401."""
    key = h.new_key()
    h.clock.advance(3600)
    response = no_claims(h, key["key"])
    assert response.status_code == 401
    assert response.json()["error"] == "key_expired"
    assert response.headers["www-authenticate"] == "Bearer"
    forged = no_claims(h, mint(key["key_id"]).key)
    assert forged.json() == {"error": "unauthorized", "message": "the credential was refused"}
    assert [reason for reason, _ in h.refusals()] == ["expired", "hash_mismatch"]


def test_a_revoked_key_whose_hash_is_gone_gets_the_uniform_401(h: Harness) -> None:
    """Revocation deletes the hash, so possession cannot be proven and the answer stays uniform."""
    key = h.new_key()
    h.client.post("/v1/nodes/terminated", json={"instance": INSTANCE}, headers=h.bearer("provisioner"))
    response = no_claims(h, key["key"])
    assert response.json() == {"error": "unauthorized", "message": "the credential was refused"}


@pytest.mark.parametrize(
    "name",
    [
        "../etc/g000001/0000000000000000-0000000000000001.gz",
        "a/b/g000001/0000000000000000-0000000000000001.gz",
        "src/g000001/0000000000000000-0000000000000001.gz\x00",
        "x" * 500,
    ],
)
def test_bad_object_name_is_400_and_audited(h: Harness, name: str) -> None:
    """A bad suffix is a 400, audited as bad_object_name with the key id; nothing is signed."""
    key = h.new_key()
    response = h.grant(key["key"], [SUFFIX, name])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_object_name"
    assert h.refusals() == [("bad_object_name", key["key_id"])]
    assert h.metrics.grants.value() == 0


def test_too_many_objects_is_400_before_authentication(h: Harness) -> None:
    """More names than max_objects_per_grant is refused without touching the key."""
    key = h.new_key()
    names = [
        SUFFIX.replace("g000001", f"g{i:06d}") for i in range(h.settings.server.max_objects_per_grant + 1)
    ]
    response = h.grant(key["key"], names)
    assert response.status_code == 400
    assert h.service.get_key(key["key_id"]).uses == 0


def test_missing_key_is_401_and_audited(h: Harness) -> None:
    """A grant request without Authorization is refused and audited as missing_credential."""
    response = h.client.post(
        "/v1/ingest/grants", json={"cluster": "c", "node": "n", "region": "eu", "objects": []}
    )
    assert response.status_code == 401
    assert h.refusals() == [("missing_credential", None)]


def test_provisioner_token_cannot_get_grants(h: Harness) -> None:
    """A provisioner token is not an ingest key: 401."""
    refused(h, h.tokens["provisioner"])
