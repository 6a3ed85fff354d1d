"""NO_PROXY matching, case by case, with the test table of Go's golang.org/x/net/http/httpproxy ported."""

from __future__ import annotations

import pytest

from agent.noproxy import NoProxy, parse_ip, split_host_port, split_target, to_ascii

# Go's proxy_test.go: `noProxy` and `UseProxyTests`, each host checked as "<host>:80".
GO_NO_PROXY = (
    "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, "
    "10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64"
)
GO_USE_PROXY = [
    ("localhost", False),  # never proxy localhost
    ("127.0.0.1", False),
    ("127.0.0.2", False),
    ("[::1]", False),
    ("[::2]", True),  # not a loopback address
    ("192.168.1.1", False),  # matches exact IPv4
    ("192.168.1.2", True),  # ports do not match
    ("192.168.1.3", False),  # matches exact IPv4:port
    ("192.168.1.4", True),  # no match
    ("10.0.0.2", False),  # matches IPv4/CIDR
    ("[2001:db8::52:0:1]", False),  # matches exact IPv6
    ("[2001:db8::52:0:2]", True),  # no match (port 443 only)
    ("[2001:db8::52:0:3]", False),  # matches exact [IPv6]:port
    ("[2002:db8:a::123]", False),  # matches IPv6/CIDR
    ("[fe80::424b:c8be:1643:a1b6]", True),  # no match
    ("barbaz.net", True),  # does not match as .barbaz.net
    ("www.barbaz.net", False),  # does match as .barbaz.net
    ("foobar.com", False),  # does match as foobar.com
    ("www.foobar.com", False),  # match because NO_PROXY includes "foobar.com"
    ("foofoobar.com", True),  # not match as a part of foobar.com
    ("baz.com", True),  # not match as a part of barbaz.com
    ("localhost.net", True),  # not match as suffix of address
    ("local.localhost", True),  # not match as prefix as address
    ("barbarbaz.net", True),  # not match, wrong domain
    ("wildcard.io", True),  # does not match as *.wildcard.io
    ("nested.wildcard.io", False),  # match as *.wildcard.io
    ("awildcard.io", True),  # not a match because of '*'
]


def _uses_proxy(no_proxy: str, hostport: str) -> bool:
    host, port = split_target("http", hostport)
    return NoProxy.parse(no_proxy).bypass(host, port) is None


@pytest.mark.parametrize(("host", "use_proxy"), GO_USE_PROXY)
def test_go_use_proxy_table(host: str, use_proxy: bool) -> None:
    """Every row of Go's UseProxyTests gives Go's answer."""
    assert _uses_proxy(GO_NO_PROXY, f"{host}:80") is use_proxy


@pytest.mark.parametrize(("host", "_use_proxy"), GO_USE_PROXY)
def test_go_all_no_proxy(host: str, _use_proxy: bool) -> None:
    """Go's TestAllNoProxy: NO_PROXY='*' sends every host direct."""
    assert _uses_proxy("*", f"{host}:80") is False


def test_go_invalid_no_proxy_entry_is_ignored() -> None:
    """Go's TestInvalidNoProxy: an entry with no host (':1') is ignored, not a crash or a match."""
    assert _uses_proxy(":1", "example.com:80") is True


def test_star_anywhere_in_the_list_disables_proxying() -> None:
    """A '*' among other entries still disables the proxy for everything, as in Go."""
    bypass = NoProxy.parse("foo.com, *, bar.com").bypass("elsewhere.org", "443")
    assert bypass is not None
    assert bypass.entry == "*"


@pytest.mark.parametrize(
    ("no_proxy", "hostport", "use_proxy"),
    [
        ("example.com", "example.com:80", False),  # Go proxyForURL table
        (".example.com", "example.com:80", True),
        ("ample.com", "example.com:80", True),
        ("example.com", "foo.example.com:80", False),
        (".foo.com", "example.com:80", True),
        (".示例.com", "www.示例.com:80", False),  # IDNA on both sides
        ("xn--fsq092h.com", "www.示例.com:80", False),
        ("示例.com", "www.xn--fsq092h.com:80", False),
        ("example.com", "[1000::%25.example.com]:123", True),  # a zone is not a domain
    ],
)
def test_go_proxy_for_url_no_proxy_rows(no_proxy: str, hostport: str, use_proxy: bool) -> None:
    """The NO_PROXY rows of Go's proxyForURLTests give Go's answer."""
    assert _uses_proxy(no_proxy, hostport) is use_proxy


@pytest.mark.parametrize(
    ("no_proxy", "hostport", "use_proxy"),
    [
        ("EXAMPLE.com", "Www.Example.COM:443", False),  # case-insensitive on both sides
        ("  example.com  ,,", "example.com:443", False),  # whitespace and empty entries
        ("example.com:8443", "example.com:443", True),  # host:port matches only that port
        ("example.com:8443", "api.example.com:8443", False),
        ("*.cluster.local", "svc.ns.cluster.local:443", False),
        ("*.cluster.local", "cluster.local:443", True),
        ("10.0.0.0/8", "10.200.3.4:443", False),  # CIDR matches IP literals
        ("10.0.0.0/8", "11.0.0.1:443", True),
        ("10.0.0.0/8", "ten.example:443", True),  # never names, even ones that resolve into it
        ("10.1.2.3/8", "10.9.9.9:443", False),  # host bits set: Go masks them
        ("10.0.0.0/255.0.0.0", "10.0.0.1:443", True),  # Go refuses netmask notation
        ("fd00::/8", "[fd12::1]:443", False),
        ("[2001:db8::1]", "[2001:db8::1]:443", True),  # brackets without a port: Go's domain, never matches
        ("2001:db8::1", "[2001:db8::1]:443", False),
        ("10.0.0.1", "[::ffff:10.0.0.1]:443", False),  # IPv4-mapped IPv6 compares as IPv4
        ("fe80::1", "[fe80::1%25eth0]:443", False),  # the zone is ignored for IP comparison
        ("", "[::ffff:127.0.0.1]:443", False),  # mapped loopback is loopback
        ("", "vm:443", True),
        ("example.com", "192.0.2.1:443", True),
        (".internal", "ip-10-0-0-1.ec2.internal:443", False),
    ],
)
def test_more_rules(no_proxy: str, hostport: str, use_proxy: bool) -> None:
    """Rules Go implements beyond its own table: case, ports, wildcards, CIDRs, IPv6 forms."""
    assert _uses_proxy(no_proxy, hostport) is use_proxy


def test_bypass_names_the_entry_that_matched() -> None:
    """The reason names the NO_PROXY entry, so preflight can say why a request went direct."""
    bypass = NoProxy.parse("foo.com, .internal, 10.0.0.0/8").bypass("db.internal", "443")
    assert bypass is not None
    assert bypass.entry == ".internal"
    assert "'.internal'" in bypass.reason
    assert "db.internal:443" in bypass.reason


def test_loopback_and_localhost_have_a_builtin_reason() -> None:
    """Localhost and loopback literals go direct with no NO_PROXY entry named."""
    rules = NoProxy.parse("")
    for host in ("localhost", "127.0.0.1", "::1"):
        bypass = rules.bypass(host, "80")
        assert bypass is not None
        assert bypass.entry is None
        assert "never uses a proxy" in bypass.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host:80", ("host", "80")),
        ("[::1]:80", ("::1", "80")),
        ("host:", ("host", "")),
        ("host", None),
        ("::1", None),  # too many colons
        ("[::1]", None),  # missing port
        ("a]b:80", None),
    ],
)
def test_split_host_port_like_go(text: str, expected: tuple[str, str] | None) -> None:
    """split_host_port accepts and refuses what Go's net.SplitHostPort does."""
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("scheme", "netloc", "expected"),
    [
        ("https", "storage.googleapis.com", ("storage.googleapis.com", "443")),
        ("http", "user:pw@host:8080", ("host", "8080")),
        ("http", "[2001:db8::1]", ("2001:db8::1", "80")),
        ("https", "[fe80::1%25eth0]:8443", ("fe80::1%eth0", "8443")),
        ("http", "www.示例.com", ("www.xn--fsq092h.com", "80")),
    ],
)
def test_split_target_is_go_canonical_addr(scheme: str, netloc: str, expected: tuple[str, str]) -> None:
    """split_target strips brackets and userinfo, decodes the zone, applies IDNA and the default port."""
    assert split_target(scheme, netloc) == expected


def test_parse_ip_refuses_zones_in_entries_and_leading_zeros() -> None:
    """IP parsing is as strict as Go's: no zone in NO_PROXY entries, no leading zeros."""
    assert parse_ip("fe80::1%eth0") is None
    assert parse_ip("fe80::1%eth0", allow_zone=True) is not None
    assert parse_ip("010.0.0.1") is None
    assert parse_ip("1.2.3") is None


def test_to_ascii_keeps_unencodable_names() -> None:
    """A name IDNA cannot encode is kept as is rather than raising."""
    assert to_ascii("bad..名") == "bad..名"
    assert to_ascii(".示例.com") == ".xn--fsq092h.com"
