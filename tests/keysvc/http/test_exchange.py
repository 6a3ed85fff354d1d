"""Unit tests of the exchange endpoint: a session once, the uniform refusal and a metric for replays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.keysvc.http_harness import SUFFIX, Harness, build

NONCE = "c" * 32


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    """A fresh in-process app."""
    yield from build(tmp_path, burst=50)


def exchange(h: Harness, credential: str, body: object) -> tuple[int, dict[str, object]]:
    """POST to the exchange endpoint and return the status and JSON body."""
    response = h.client.post(
        "/v1/ingest/exchange", json=body, headers={"authorization": f"Bearer {credential}"}
    )
    return response.status_code, response.json()


def test_exchange_then_grant_with_the_session(h: Harness) -> None:
    """The key buys a session once; grants with the session work, the raw key is then a replay."""
    key = h.new_key()
    status, body = exchange(h, key["key"], {"nonce": NONCE})
    assert status == 200, body
    session = str(body["session"])
    assert session.startswith("nls1_")
    assert body["key_id"] == key["key_id"]
    assert body["superseded"] is False
    assert h.grant(session, [SUFFIX]).status_code == 200
    refused = h.grant(key["key"], [SUFFIX])
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    assert ("replayed", key["key_id"]) in h.refusals()
    assert h.metrics.refusals.value("replayed") == 1


def test_second_agent_gets_the_uniform_refusal(h: Harness) -> None:
    """Another nonce answers exactly what an unknown key answers, and is audited as replayed."""
    key = h.new_key()
    assert exchange(h, key["key"], {"nonce": NONCE})[0] == 200
    replay = exchange(h, key["key"], {"nonce": "d" * 32})
    unknown = exchange(h, key["key"][:5] + "a" * 16 + key["key"][21:], {"nonce": "d" * 32})
    assert replay == unknown
    assert replay[0] == 401
    assert replay[1]["error"] == "unauthorized"
    assert ("replayed", key["key_id"]) in h.refusals()
    assert h.metrics.refusals.value("replayed") == 1
    again = exchange(h, key["key"], {"nonce": NONCE})
    assert again[0] == 200
    assert again[1]["superseded"] is True


@pytest.mark.parametrize(
    "body",
    [{}, {"nonce": "short"}, {"nonce": "A" * 32}, {"nonce": "c" * 5000}, {"nonce": NONCE, "extra": 1}, []],
)
def test_malformed_exchange_bodies_change_nothing(h: Harness, body: object) -> None:
    """A malformed body is a clear 4xx that leaves the key unexchanged and audits nothing new."""
    key = h.new_key()
    before = len(h.audit())
    status, answer = exchange(h, key["key"], body)
    assert status == 422, answer
    assert answer["error"] == "invalid_request"
    assert str(answer["message"]).startswith(("nonce:", "body:"))
    assert len(h.audit()) == before
    assert h.service.get_key(key["key_id"]).nonce_hash is None


def test_session_is_refused_outside_the_agent_endpoints(h: Harness) -> None:
    """A session on an admin endpoint is refused like an ingest key there (403, audited out_of_scope)."""
    key = h.new_key()
    session = str(exchange(h, key["key"], {"nonce": NONCE})[1]["session"])
    response = h.client.get("/v1/keys", headers={"authorization": f"Bearer {session}"})
    assert response.status_code == 403
    assert ("out_of_scope", key["key_id"]) in h.refusals()


def test_identity_fields_come_together_and_bounded(h: Harness) -> None:
    """A document without its signature, or one over 4096 characters, is a 422 that changes nothing."""
    key = h.new_key()
    half = exchange(h, key["key"], {"nonce": NONCE, "identity_document": "{}"})
    huge = exchange(
        h, key["key"], {"nonce": NONCE, "identity_document": "x" * 5000, "identity_signature": "s"}
    )
    assert (half[0], huge[0]) == (422, 422)
    assert "identity_document" in str(half[1]["message"]) + str(huge[1]["message"])
    assert h.service.get_key(key["key_id"]).nonce_hash is None


def test_a_document_to_a_keysvc_without_trust_is_refused_as_bad_signature(h: Harness) -> None:
    """The harness trusts no certificate: a document is refused uniformly, audited bad_signature."""
    key = h.new_key()
    status, body = exchange(
        h, key["key"], {"nonce": NONCE, "identity_document": "{}", "identity_signature": "c2ln"}
    )
    assert status == 401
    assert body["error"] == "unauthorized"
    assert ("bad_signature", key["key_id"]) in h.refusals()
