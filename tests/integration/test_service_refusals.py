"""Refusals against a real `keysvc serve`: 401, 403, 429, 400, 413, 415, 422, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from keysvc.wire.keyformat import mint
from tests import servers
from tests.integration.service_client import SUFFIX, add_node, audit, bearer, client, counts, grant, unique

pytestmark = pytest.mark.integration
UNIFORM = {"error": "unauthorized", "message": "the credential was refused"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client from 127.0.0.1."""
    with client() as c:
        yield c


def test_key_failures_are_one_uniform_401(keysvc_server: servers.Server, http: httpx.Client) -> None:
    """Malformed, unknown, out-of-scope and revoked keys get identical 401s; the audit has each reason."""
    cluster = unique()
    key = add_node(http, keysvc_server, cluster)
    revoked = add_node(http, keysvc_server, cluster, node="ip-10-0-0-2.ec2.internal")
    terminate = {"cluster": cluster, "node": "ip-10-0-0-2.ec2.internal"}
    http.post(
        f"{keysvc_server.url}/v1/nodes/terminated",
        json=terminate,
        headers=bearer(keysvc_server.extra["provisioner"]),
    )
    name = [SUFFIX.format(start=0, end=1)]
    with client("127.0.0.21") as other:
        answers = [
            grant(other, keysvc_server, "nlk1_not-a-key", cluster, name),
            grant(other, keysvc_server, mint().key, cluster, name),
            grant(other, keysvc_server, key["key"], cluster, name, node="ip-10-9-9-9.ec2.internal"),
            grant(other, keysvc_server, revoked["key"], cluster, name, node="ip-10-0-0-2.ec2.internal"),
        ]
    assert {(a.status_code, a.content) for a in answers} == {
        (401, json.dumps(UNIFORM, separators=(",", ":")).encode())
    }
    reasons = [r["reason"] for r in audit(http, keysvc_server, key_id=key["key_id"], event="refused")]
    assert reasons == ["out_of_scope"]
    reasons = [r["reason"] for r in audit(http, keysvc_server, key_id=revoked["key_id"], event="refused")]
    assert reasons == ["revoked"]


def test_ingest_key_at_admin_endpoint_is_403_and_audited(
    keysvc_server: servers.Server, http: httpx.Client
) -> None:
    """An ingest key used on the admin API or AddNode is a 403, audited as a scope violation of that key."""
    cluster = unique()
    key = add_node(http, keysvc_server, cluster)
    with client("127.0.0.22") as other:
        assert other.get(f"{keysvc_server.url}/v1/admin/keys", headers=bearer(key["key"])).status_code == 403
        body = {"instance": "i-0123456789abcdef0"}
        assert (
            other.post(
                f"{keysvc_server.url}/v1/nodes/terminated", json=body, headers=bearer(key["key"])
            ).status_code
            == 403
        )
    refusals = audit(http, keysvc_server, key_id=key["key_id"], event="refused")
    assert [(r["reason"], r["source"]) for r in refusals] == [("out_of_scope", "127.0.0.22")] * 2
    assert refusals[0]["detail"]["endpoint"] == "/v1/admin/keys"


def test_brute_force_gets_429_and_other_sources_are_served(
    keysvc_server: servers.Server, http: httpx.Client
) -> None:
    """A guessing loop from one address hits 429 with Retry-After; another address is served meanwhile."""
    url = f"{keysvc_server.url}/v1/admin/keys"
    with client("127.0.0.23") as attacker, client("127.0.0.24") as operator:
        statuses = []
        for _ in range(25):
            guess = f"nlt1_{'a' * 16}_{'b' * 32}"
            statuses.append(attacker.get(url, headers=bearer(guess)).status_code)
            assert operator.get(url, headers=bearer(keysvc_server.extra["admin"])).status_code == 200
        assert statuses[:10] == [401] * 10
        assert set(statuses[12:]) == {429}
        limited = attacker.get(url, headers=bearer(keysvc_server.extra["admin"]))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
    lockouts = [r for r in audit(http, keysvc_server, event="refused") if r["source"] == "127.0.0.23"]
    assert [r["reason"] for r in lockouts].count("rate_limited") == 1


def test_bad_object_name_is_400_audited_and_signs_nothing(
    keysvc_server: servers.Server, http: httpx.Client
) -> None:
    """A traversal attempt in a name is a 400 for the agent and a bad_object_name refusal in the audit."""
    cluster = unique()
    key = add_node(http, keysvc_server, cluster)
    answer = grant(
        http,
        keysvc_server,
        key["key"],
        cluster,
        ["../../other-node/g000001/0000000000000000-0000000000000001.gz"],
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_object_name"
    assert "url" not in answer.text
    assert [r["reason"] for r in audit(http, keysvc_server, key_id=key["key_id"], event="refused")] == [
        "bad_object_name"
    ]


def test_bad_bodies_are_4xx_and_write_nothing(keysvc_server: servers.Server, http: httpx.Client) -> None:
    """413 (declared and chunked), 415 and 422 answers are JSON, and no key or audit record appears."""
    url = f"{keysvc_server.url}/v1/nodes"
    auth = bearer(keysvc_server.extra["provisioner"])
    json_type = {**auth, "content-type": "application/json"}
    before = counts(http, keysvc_server)

    def chunked() -> Iterator[bytes]:
        yield b'{"cluster":"'
        for _ in range(80):
            yield b"x" * 1024

    cases = [
        (http.post(url, content=b"{" + b" " * 70_000 + b"}", headers=json_type), 413),
        (http.post(url, content=chunked(), headers=json_type), 413),
        (
            http.post(
                url,
                content=b"cluster=a",
                headers={**auth, "content-type": "application/x-www-form-urlencoded"},
            ),
            415,
        ),
        (http.post(url, content=b'{"cluster": "a", "bogus": 1}', headers=json_type), 422),
        (http.post(url, content=b'{"cluster": ', headers=json_type), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "message"}
    assert counts(http, keysvc_server) == before
