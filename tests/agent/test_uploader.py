"""Grant and PUT answers mapped to outcomes, and the retry policy with injected sleep."""

from __future__ import annotations

import json

import pytest

from agent.errors import (
    ConnectError,
    GrantRejected,
    KeyRefused,
    RetryableFailure,
    SettingMismatch,
    UrlExpired,
)
from agent.keyfile import NodeKey
from agent.transport import Response
from agent.uploader import Grant, KeysvcClient, put_chunk, retrying
from keysvc.wire import keyformat
from tests.agent.fakes import Scripted

KEY = keyformat.mint()
GRANT = Grant(
    "s/g000001/0000000000000000-0000000000000010.gz", "http://b/o", {"x-goog-if-generation-match": "0"}, 0
)


def client(transport: Scripted, clock: list[float]) -> KeysvcClient:
    """A grant client whose monotonic clock reads clock[0]."""
    return KeysvcClient(
        transport,
        "https://keysvc.test/",
        NodeKey(KEY.key_id, KEY.key),
        cluster="c",
        node="n",
        region="eu",
        monotonic=lambda: clock[0],
    )


def grant_body(server_time: float, expires: float) -> bytes:
    """A keysvc 200 answer with one grant."""
    return json.dumps(
        {
            "key_id": KEY.key_id,
            "server_time": server_time,
            "key_expires_at": expires,
            "bucket": "b",
            "grants": [
                {
                    "name": GRANT.name,
                    "object": "p/" + GRANT.name,
                    "url": "http://b/o",
                    "method": "PUT",
                    "headers": {"content-type": "application/gzip"},
                    "expires_at": server_time + 300,
                }
            ],
        }
    ).encode()


def test_expiry_comes_from_the_server_clock_not_the_node_clock() -> None:
    """key_expires_at - server_time is mapped onto the local monotonic clock at send time."""
    transport = Scripted(Response(200, {}, grant_body(server_time=2_000_000_000.0, expires=2_000_000_600.0)))
    answer = client(transport, [50.0]).grant([GRANT.name])
    assert answer.expires_at == 650.0
    assert answer.grants[GRANT.name].deadline == 350.0
    method, url, headers, body = transport.sent[0]
    assert (method, url) == ("POST", "https://keysvc.test/v1/ingest/grants")
    assert headers["Authorization"] == f"Bearer {KEY.key}"
    assert json.loads(body or b"") == {"objects": [{"name": GRANT.name}]}  # no claims sent


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, KeyRefused),
        (403, KeyRefused),
        (400, GrantRejected),
        (503, RetryableFailure),
        (429, RetryableFailure),
    ],
)
def test_grant_statuses_map_to_errors(status: int, error: type[Exception]) -> None:
    """401/403 refuse the key, 400 is our bug, 429/5xx are retryable."""
    with pytest.raises(error):
        client(Scripted(Response(status, {"Retry-After": "7"}, b"{}")), [0.0]).grant([])


def scoped_body(**scope: str) -> bytes:
    """A 200 answer that names the key's record scope, as current keysvc does."""
    return json.dumps({**json.loads(grant_body(100.0, 200.0)), **scope}).encode()


def test_a_setting_that_disagrees_with_the_key_record_is_a_config_error() -> None:
    """keysvc says the key is for node n2 while the setting says n: SettingMismatch names the setting."""
    transport = Scripted(Response(200, {}, scoped_body(cluster="c", node="n2", region="eu")))
    with pytest.raises(SettingMismatch, match=r"setting node is 'n' but key \w+ belongs to node 'n2'"):
        client(transport, [0.0]).grant([])


def test_unset_settings_take_the_key_record_as_is() -> None:
    """Without cluster, node or region settings any record scope is accepted and returned."""
    transport = Scripted(Response(200, {}, scoped_body(cluster="x", node="y", region="z")))
    plain = KeysvcClient(transport, "https://k/", NodeKey(KEY.key_id, KEY.key), monotonic=lambda: 0.0)
    assert plain.grant([]).scope == {"cluster": "x", "node": "y", "region": "z"}


@pytest.mark.parametrize(
    ("body", "ended"),
    [
        (b'{"error": "key_expired", "message": "m"}', "expired"),
        (b'{"error": "key_revoked", "message": "m"}', "revoked"),
        (b'{"error": "unauthorized", "message": "the credential was refused"}', None),
        (b"not json", None),
        (b'["key_expired"]', None),
    ],
)
def test_only_keysvc_s_final_codes_mark_a_refusal_as_ended(body: bytes, ended: str | None) -> None:
    """A 401 is ``ended`` only when keysvc answered key_expired or key_revoked."""
    with pytest.raises(KeyRefused) as caught:
        client(Scripted(Response(401, {}, body)), [0.0]).grant([])
    assert caught.value.ended == ended


def test_retry_after_is_carried() -> None:
    """A 429's Retry-After reaches the retry policy."""
    with pytest.raises(RetryableFailure) as info:
        client(Scripted(Response(429, {"retry-after": "7"}, b"")), [0.0]).grant([])
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (Response(200, {}, b""), "stored"),
        (Response(201, {}, b""), "stored"),
        (Response(412, {}, b""), "already-there"),
    ],
)
def test_put_success_and_already_there(response: Response, outcome: str) -> None:
    """200/201 store the chunk; 412 means it is already there and counts as delivered."""
    transport = Scripted(response)
    assert put_chunk(transport, GRANT, b"gz") == outcome
    assert transport.sent[0][2] == {"x-goog-if-generation-match": "0"}


@pytest.mark.parametrize(
    "response",
    [
        Response(403, {}, b"<Error>SignatureDoesNotMatch</Error>"),
        Response(400, {}, b"<Error><Code>ExpiredToken</Code></Error>"),
    ],
)
def test_expired_url_asks_for_a_fresh_grant(response: Response) -> None:
    """403 or 400 ExpiredToken from the bucket raise UrlExpired."""
    with pytest.raises(UrlExpired):
        put_chunk(Scripted(response), GRANT, b"gz")


def test_retries_use_full_jitter_and_injected_sleep() -> None:
    """Connection errors and 503s are retried with jittered waits below the cap; nothing really sleeps."""
    slept: list[float] = []
    transport = Scripted(
        ConnectError("down"), Response(503, {}, b""), ConnectError("down"), Response(200, {}, b"")
    )
    outcome = retrying(sleep=slept.append, should_stop=lambda: False, max_wait=2.0)(
        lambda: put_chunk(transport, GRANT, b"gz")
    )
    assert outcome == "stored"
    assert len(slept) == 3
    assert all(0 <= wait <= 2.0 for wait in slept)


def test_retry_after_sets_a_floor_on_the_wait() -> None:
    """A Retry-After larger than the jitter is honoured, capped at max_wait."""
    slept: list[float] = []
    transport = Scripted(Response(429, {"Retry-After": "1.5"}, b""), Response(200, {}, b""))
    retrying(sleep=slept.append, should_stop=lambda: False, max_wait=5.0)(
        lambda: put_chunk(transport, GRANT, b"")
    )
    assert slept[0] >= 1.5


def test_refusal_is_never_retried() -> None:
    """KeyRefused passes straight through the retry policy."""
    slept: list[float] = []
    transport = Scripted(Response(401, {}, b""))
    with pytest.raises(KeyRefused):
        retrying(sleep=slept.append, should_stop=lambda: False)(lambda: client(transport, [0.0]).grant([]))
    assert slept == []


def test_should_stop_ends_retrying_with_the_last_error() -> None:
    """When told to stop (revoked, expired, SIGTERM budget), the last failure is raised."""
    transport = Scripted(*[ConnectError("down")] * 3)
    calls = iter([False, True])
    with pytest.raises(ConnectError):
        retrying(sleep=lambda _s: None, should_stop=lambda: next(calls))(
            lambda: put_chunk(transport, GRANT, b"")
        )
    assert len(transport.sent) == 2
