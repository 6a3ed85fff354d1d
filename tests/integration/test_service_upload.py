"""The data path end to end against real processes: AddNode, grant, PUT through fake-gcs-server,
and each URL's security properties checked directly (the emulator checks none of them)."""

from __future__ import annotations

import gzip
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from keysvc.devtools import emulator
from tests import servers
from tests.integration.service_client import SUFFIX, add_node, client, grant, unique
from tests.signed_urls import public_key_of, verify_v4

pytestmark = pytest.mark.integration
NODE = "ip-10-0-0-1.ec2.internal"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client from 127.0.0.1."""
    with client() as c:
        yield c


def test_put_through_granted_url_lands_at_the_expected_name(
    keysvc_server: servers.Server, fake_gcs: servers.Server, http: httpx.Client
) -> None:
    """Bytes PUT through each granted URL with its headers land at <prefix>/<cluster>/<node>/<suffix>."""
    cluster = unique()
    key = add_node(http, keysvc_server, cluster)
    chunks = [b"first line\n" * 50, b"second part\n" * 70]
    names = [
        SUFFIX.format(start=0, end=len(chunks[0])),
        SUFFIX.format(start=len(chunks[0]), end=sum(map(len, chunks))),
    ]
    answer = grant(http, keysvc_server, key["key"], cluster, names)
    assert answer.status_code == 200, answer.text
    for item, data in zip(answer.json()["grants"], chunks, strict=True):
        body = gzip.compress(data)
        put = http.put(item["url"], content=body, headers=item["headers"])
        assert put.status_code == 200, put.text
        assert item["object"] == f"nodelogs/{cluster}/{NODE}/{item['name']}"
        assert emulator.read_object(fake_gcs.url, "nodelogs-eu", item["object"]) == body
    listed = emulator.list_objects(fake_gcs.url, "nodelogs-eu", f"nodelogs/{cluster}/{NODE}/")
    assert [o["name"] for o in listed] == [f"nodelogs/{cluster}/{NODE}/{n}" for n in names]
    assert listed[0]["contentType"] == "application/gzip"


def test_each_url_has_the_required_security_properties(
    keysvc_server: servers.Server, fake_gcs: servers.Server, http: httpx.Client
) -> None:
    """The V4 signature verifies with the public key; headers, expiry, path and bucket are as promised."""
    cluster = unique()
    key = add_node(http, keysvc_server, cluster)
    names = [SUFFIX.format(start=i * 10, end=i * 10 + 10) for i in range(5)]
    before = time.time()
    body = grant(http, keysvc_server, key["key"], cluster, names).json()
    public = public_key_of(keysvc_server.extra["service_account"])
    gcs_host = urllib.parse.urlsplit(fake_gcs.url).netloc
    for item in body["grants"]:
        assert item["headers"] == {
            "content-type": "application/gzip",
            "x-goog-if-generation-match": "0",
            "x-goog-content-length-range": "0,8388608",
        }
        signed = verify_v4(item["url"], "PUT", item["headers"], public)
        assert signed.signed_headers == (
            "content-type", "host", "x-goog-content-length-range", "x-goog-if-generation-match",
        )  # fmt: skip
        assert signed.host == gcs_host
        assert signed.bucket == "nodelogs-eu"
        assert signed.object_name.startswith(f"nodelogs/{cluster}/{NODE}/")
        assert signed.object_name == item["object"]
        assert signed.expires_in <= min(300, key["expires_at_unix"] - int(before))
        assert signed.expires_at <= key["expires_at_unix"]
        assert item["expires_at"] == signed.expires_at
        assert abs(signed.signed_at - before) < 5
        assert "Content-Encoding".lower() not in item["headers"]


def test_region_picks_its_bucket(
    keysvc_server: servers.Server, fake_gcs: servers.Server, http: httpx.Client
) -> None:
    """A key minted in region us gets URLs for the us bucket, and its PUT lands there and not in eu."""
    cluster = unique()
    key = add_node(http, keysvc_server, cluster, region="us")
    name = SUFFIX.format(start=0, end=3)
    item = grant(http, keysvc_server, key["key"], cluster, [name], region="us").json()["grants"][0]
    assert (
        verify_v4(
            item["url"], "PUT", item["headers"], public_key_of(keysvc_server.extra["service_account"])
        ).bucket
        == "nodelogs-us"
    )
    assert http.put(item["url"], content=gzip.compress(b"abc"), headers=item["headers"]).status_code == 200
    assert [
        o["name"] for o in emulator.list_objects(fake_gcs.url, "nodelogs-us", f"nodelogs/{cluster}/")
    ] == [item["object"]]
    assert emulator.list_objects(fake_gcs.url, "nodelogs-eu", f"nodelogs/{cluster}/") == []
    eu_attempt = grant(http, keysvc_server, key["key"], cluster, [name], region="eu")
    assert eu_attempt.status_code == 401


def test_urls_never_outlive_a_short_key(fake_gcs: servers.Server) -> None:
    """With a 60 s key, URLs are cut to the key's remaining life, not the 300 s default."""
    short = servers.start_keysvc(fake_gcs.url, key_ttl_seconds=60)
    try:
        with client() as http:
            cluster = unique()
            key = add_node(http, short, cluster)
            item = grant(http, short, key["key"], cluster, [SUFFIX.format(start=0, end=1)]).json()["grants"][
                0
            ]
            signed = verify_v4(
                item["url"], "PUT", item["headers"], public_key_of(short.extra["service_account"])
            )
            assert signed.expires_in <= 60
            assert signed.expires_at <= key["expires_at_unix"]
    finally:
        short.close()
