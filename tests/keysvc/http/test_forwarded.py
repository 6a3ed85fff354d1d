"""Forwarded headers are believed only from configured proxies; the limiter and audit then see the client."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from keysvc.config import ServerConfig
from keysvc.errors import ConfigError
from keysvc.http.forwarded import forwarded_for, parse_networks, real_client, x_forwarded_for
from tests.keysvc.http_harness import build

BAD = {"authorization": "Bearer nlt1_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}
TRUSTED = parse_networks(["10.0.0.0/24", "2001:db8::/32"])


def test_rfc7239_and_x_forwarded_for_are_parsed() -> None:
    """for= values (quoted, bracketed IPv6, ports) and X-Forwarded-For lists become addresses in order."""
    header = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711", for=unknown'
    assert forwarded_for(header) == ["192.0.2.60", "2001:db8:cafe::17", None]
    assert x_forwarded_for("198.51.100.7, 10.0.0.9:8080 , junk") == ["198.51.100.7", "10.0.0.9", None]


@pytest.mark.parametrize(
    ("peer", "chain", "client"),
    [
        ("192.0.2.1", ["198.51.100.7"], "192.0.2.1"),  # an untrusted peer's header is ignored
        ("10.0.0.5", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.5", ["6.6.6.6", "198.51.100.7", "10.0.0.9"], "198.51.100.7"),  # spoofed left part skipped
        ("10.0.0.5", ["10.0.0.8", "10.0.0.9"], "10.0.0.8"),  # all trusted: the leftmost
        ("10.0.0.5", ["198.51.100.7", None], "10.0.0.5"),  # garbage next to us: stop at what is known
        ("10.0.0.5", [], "10.0.0.5"),
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(peer: str, chain: list[str | None], client: str) -> None:
    """Walking right to left past trusted proxies finds the address the first trusted proxy saw."""
    assert real_client(peer, chain, TRUSTED) == client


def test_a_bad_proxy_entry_is_a_config_error() -> None:
    """An entry that is neither an address nor a CIDR names itself in a ConfigError."""
    with pytest.raises(ConfigError, match="not-an-ip"):
        parse_networks(["10.0.0.0/8", "not-an-ip"])


def test_untrusted_peer_cannot_pick_its_rate_limit_bucket_or_audit_source(tmp_path: Path) -> None:
    """Without trusted proxies, X-Forwarded-For changes nothing: one bucket, the peer's address audited."""
    for h in build(tmp_path):
        statuses = [
            h.client.get("/v1/admin/keys", headers={**BAD, "x-forwarded-for": f"198.51.100.{i}"}).status_code
            for i in range(7)
        ]
        assert statuses == [401] * 5 + [429] * 2
        sources = {r.event.source for r in h.audit() if r.event.event.value == "refused"}
        assert sources == {"10.0.0.1"}


def test_trusted_balancer_gives_each_client_its_own_bucket_and_audit_source(tmp_path: Path) -> None:
    """Behind a configured balancer, each forwarded client is limited and audited under its own address."""
    server = replace(ServerConfig(), trusted_proxies=("10.0.0.0/24",))
    for h in build(tmp_path, server=server):
        first = [
            h.client.get("/v1/admin/keys", headers={**BAD, "x-forwarded-for": "198.51.100.7"}).status_code
            for _ in range(6)
        ]
        assert first == [401] * 5 + [429]
        other = h.client.get(
            "/v1/admin/keys", headers={**h.bearer("admin"), "forwarded": 'for="198.51.100.8"'}
        )
        assert other.status_code == 200
        sources = [r.event.source for r in h.audit() if r.event.event.value == "refused"]
        assert set(sources) == {"198.51.100.7"}
