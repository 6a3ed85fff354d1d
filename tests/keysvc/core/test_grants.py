"""Unit tests of the grant policy: URL lifetime, signed headers and object names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysvc.core.grants import plan_grants, upload_headers, url_lifetime
from keysvc.errors import InvalidObjectName

T0 = 1_800_000_000.0
SUFFIX = "var-log-syslog/g000001/0000000000000000-0000000000001000.gz"


def test_headers_bind_type_create_only_and_size() -> None:
    """The signed headers fix gzip content, create-only writes and the size bound, and no Content-Encoding."""
    assert upload_headers(4096) == {
        "content-type": "application/gzip",
        "x-goog-if-generation-match": "0",
        "x-goog-content-length-range": "0,4096",
    }


def test_lifetime_is_the_configured_ttl_when_the_key_has_time() -> None:
    """A key with an hour left gets URLs of the configured TTL."""
    assert url_lifetime(T0, T0 + 3600, 300) == 300


def test_lifetime_is_cut_to_the_key() -> None:
    """A key with 42 s left gets a 42 s URL."""
    assert url_lifetime(T0, T0 + 42, 300) == 42


def test_lifetime_never_exceeds_fifteen_minutes() -> None:
    """Even a misconfigured TTL is capped at 900 s."""
    assert url_lifetime(T0, T0 + 3600, 5000) == 900


def test_no_lifetime_for_an_expired_key() -> None:
    """A key at or past its expiry yields no lifetime."""
    assert url_lifetime(T0 + 10, T0 + 10, 300) == 0
    assert url_lifetime(T0 + 11, T0 + 10, 300) == 0


@given(
    now=st.floats(min_value=T0, max_value=T0 + 4000),
    expires=st.floats(min_value=T0, max_value=T0 + 3600),
    ttl=st.integers(min_value=1, max_value=900),
)
def test_a_url_never_outlives_its_key(now: float, expires: float, ttl: int) -> None:
    """For any times, the floored signing second plus the lifetime is at most the key's expiry."""
    lifetime = url_lifetime(now, expires, ttl)
    assert 0 <= lifetime <= ttl
    if lifetime:
        assert int(now) + lifetime <= expires


def test_plan_puts_objects_under_the_node_prefix() -> None:
    """Each suffix becomes <prefix>/<cluster>/<node>/<suffix>, signed at the floored second."""
    plans = plan_grants(
        [SUFFIX],
        prefix="nodelogs",
        cluster="prod",
        node="n1",
        now=T0 + 0.7,
        key_expires_at=T0 + 100,
        url_ttl_seconds=300,
    )
    assert [(p.name, p.object, p.signed_at, p.expires_in, p.expires_at) for p in plans] == [
        (SUFFIX, f"nodelogs/prod/n1/{SUFFIX}", int(T0), 100, int(T0) + 100)
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "../x/g000001/0000000000000000-0000000000000001.gz",
        "a/b/g000001/0000000000000000-0000000000000001.gz",
        "src/g000001/0000000000000001-0000000000000001.gz",
        "src/g000001/0000000000000000-0000000000000001.gz\n",
        "src/g000001/0000000000000000-0000000000000001.txt",
        "",
    ],
)
def test_plan_refuses_bad_names(bad: str) -> None:
    """Traversal, extra segments, empty ranges, control characters and other extensions are refused."""
    with pytest.raises(InvalidObjectName):
        plan_grants(
            [SUFFIX, bad],
            prefix="p",
            cluster="c",
            node="n",
            now=T0,
            key_expires_at=T0 + 10,
            url_ttl_seconds=5,
        )


def test_plan_refuses_duplicates() -> None:
    """The same name twice in one request is refused as a client bug."""
    with pytest.raises(InvalidObjectName, match="twice"):
        plan_grants(
            [SUFFIX, SUFFIX],
            prefix="p",
            cluster="c",
            node="n",
            now=T0,
            key_expires_at=T0 + 9,
            url_ttl_seconds=5,
        )


def test_empty_plan_is_fine() -> None:
    """No names, no grants: the agent's probe."""
    assert (
        plan_grants([], prefix="p", cluster="c", node="n", now=T0, key_expires_at=T0 + 9, url_ttl_seconds=5)
        == []
    )
