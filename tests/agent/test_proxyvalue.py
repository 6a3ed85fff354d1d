"""Proxy values, one by one, against what Go 1.19's ``http.ProxyFromEnvironment`` does with them.

The Go column was recorded by running Go 1.19's net/http (Debian's golang-go) on each value as
HTTP_PROXY and HTTPS_PROXY. "use" is a proxy Go really connects to; "fail" is a value Go turns into a
proxy it cannot reach (its retry with "http://" in front makes the text before "://" the proxy
host, or leaves no host or a bad port), so the request fails; "ignored" is a value Go cannot parse
at all, so it silently goes direct. The agent uses what Go uses, and stops at start (ConfigError,
exit 2) on both "fail" and "ignored": silently going around a configured proxy is never meant.
"""

from __future__ import annotations

import pytest

from agent.errors import ConfigError
from agent.proxyvalue import ProxyURL, parse_proxy_value, redact_proxy

# (value, Go 1.19's outcome, the agent's: a proxy's display form, or "error: <text in the message>")
GO_TABLE = [
    ("proxy:3128", "use http://proxy:3128", "http://proxy:3128"),
    ("proxy", "use http://proxy (port 80)", "http://proxy:80"),
    ("10.0.0.1:3128", "use http://10.0.0.1:3128", "http://10.0.0.1:3128"),
    ("[::1]:3128", "use http://[::1]:3128", "http://[::1]:3128"),
    ("http://proxy:3128", "use http://proxy:3128", "http://proxy:3128"),
    ("HTTP://proxy:3128", "use http://proxy:3128 (scheme lower-cased)", "http://proxy:3128"),
    ("https://proxy:3128", "use https://proxy:3128", "https://proxy:3128"),
    ("https://proxy", "use https://proxy (port 443)", "https://proxy:443"),
    ("socks5://proxy:1080", "use socks5://proxy:1080", "socks5://proxy:1080"),
    ("SOCKS5://proxy", "use socks5://proxy (port 1080)", "socks5://proxy:1080"),
    ("http://[::1]:3128", "use http://[::1]:3128", "http://[::1]:3128"),
    ("http://proxy:3128/path", "use http://proxy:3128 (path ignored)", "http://proxy:3128"),
    ("http://proxy:3128#frag", "use http://proxy:3128 (fragment ignored)", "http://proxy:3128"),
    ("user:pw@proxy:3128", "use http://user:pw@proxy:3128", "http://user:***@proxy:3128"),
    ("http://user@proxy:3128", "use, user without password", "http://user@proxy:3128"),
    ("http://user:p%40ss@proxy:3128", "use, password p@ss", "http://user:***@proxy:3128"),
    # socks5h: Go 1.19 fails (host "socks5h"); the agent resolves names at the proxy, as curl does.
    ("socks5h://proxy:1080", "fail: http proxy host 'socks5h'", "socks5h://proxy:1080"),
    ("ftp://proxy:21", "fail: http proxy host 'ftp'", "error: unsupported proxy scheme 'ftp'"),
    ("socks4://proxy:1080", "fail: http proxy host 'socks4'", "error: unsupported proxy scheme 'socks4'"),
    ("foo://host", "fail: http proxy host 'foo'", "error: unsupported proxy scheme 'foo'"),
    ("http://user:pa/ss@proxy:3128", "fail: http proxy host 'http'", "error: the port is not a number"),
    ("http://user:pa#ss@proxy:3128", "fail: http proxy host 'http'", "error: the port is not a number"),
    ("http://user:pa?ss@proxy:3128", "fail: http proxy host 'http'", "error: the port is not a number"),
    ("http://proxy:abc", "fail: http proxy host 'http'", "error: the port is not a number"),
    ("http://proxy:99999", "fail: port 99999 cannot be dialled", "error: between 1 and 65535"),
    ("http://pro xy:3128", "fail: http proxy host 'http'", "error: whitespace"),
    ("http://proxy:3128 ", "fail: http proxy host 'http'", "error: whitespace"),
    ("proxy:3128 ", "fail: scheme 'proxy', no host", "error: whitespace"),
    (" http://proxy:3128", "ignored: goes direct", "error: whitespace"),
    (" proxy:3128", "ignored: goes direct", "error: whitespace"),
    ("http://us%zz:pw@proxy:3128", "ignored: goes direct", "error: malformed percent escape"),
    ("http://user:p%zz@proxy:3128", "ignored: goes direct", "error: malformed percent escape"),
    ("http:proxy:3128", "fail: opaque URL, no host", "error: with the two slashes"),
    ("http://", "fail: no host", "error: names no proxy host"),
    ("http://:3128", "fail: no host", "error: names no proxy host"),
    ("//proxy:3128", "fail: no host", "error: names no proxy host"),
    ("http://pro{xy:3128", "fail: http proxy host 'http'", "error: characters a host name cannot have"),
]


@pytest.mark.parametrize(("value", "go", "agent"), GO_TABLE, ids=[row[0] for row in GO_TABLE])
def test_proxy_value_against_go(value: str, go: str, agent: str) -> None:
    """The agent uses the proxy Go uses, and refuses at start each value Go fails on or ignores."""
    if agent.startswith("error: "):
        assert not go.startswith("use"), "a value Go uses must be usable by the agent"
        with pytest.raises(ConfigError, match=f"HTTPS_PROXY=.*{agent.removeprefix('error: ')}"):
            parse_proxy_value(value, "HTTPS_PROXY")
    else:
        parsed = parse_proxy_value(value, "HTTPS_PROXY")
        assert parsed is not None
        assert parsed.display == agent


def test_empty_value_means_direct() -> None:
    """An empty value is no proxy at all, as in Go."""
    assert parse_proxy_value("", "HTTP_PROXY") is None


def test_credentials_are_percent_decoded_for_every_scheme() -> None:
    """User and password come from the URL's user info, percent-decoded, whatever the scheme."""
    for scheme in ("http", "https", "socks5", "socks5h"):
        parsed = parse_proxy_value(f"{scheme}://a%3Ab:p%2F%23%3F%40w@proxy:8", "HTTPS_PROXY")
        assert parsed == ProxyURL(scheme, "proxy", 8, "a:b", "p/#?@w")


@pytest.mark.parametrize(
    "value",
    [
        "http://agent:Sup3r/Secret@proxy:3128",
        "http://agent:Sup3r#Secret@proxy:3128",
        "http://agent:Sup3r?Secret@proxy:3128",
        "http://agent:Sup3r%zzSecret@proxy:3128",
        "ftp://agent:Sup3rSecret@proxy:3128",
        "http://agent:Sup3r Secret@proxy:3128",
        "socks5://agent:Sup3r<Secret@proxy:1080",
        "http:agent:Sup3rSecret@proxy",
    ],
)
def test_a_malformed_value_never_shows_its_password(value: str) -> None:
    """The error for a malformed value carrying a password shows user:***@host:port at most."""
    with pytest.raises(ConfigError) as caught:
        parse_proxy_value(value, "HTTPS_PROXY")
    message = str(caught.value)
    assert "Sup3r" not in message
    assert "Secret" not in message
    assert "HTTPS_PROXY=" in message


@pytest.mark.parametrize(
    "value", ["http://agent:Sup3rSecret", "https://agent:Sup3rSecret/x", "agent:Sup3rSecret"]
)
def test_a_forgotten_host_does_not_show_the_password_as_a_port(value: str) -> None:
    """``user:password`` with the ``@host`` forgotten is refused without quoting the password as a port."""
    with pytest.raises(ConfigError) as caught:
        parse_proxy_value(value, "HTTPS_PROXY")
    assert "Sup3r" not in str(caught.value)


def test_repr_and_str_never_show_the_password() -> None:
    """A parsed proxy's repr, str and display hide the password."""
    parsed = parse_proxy_value("https://agent:s3cret@proxy:3128", "HTTPS_PROXY")
    assert parsed is not None
    for text in (repr(parsed), str(parsed), parsed.display):
        assert "s3cret" not in text
    assert parsed.display == "https://agent:***@proxy:3128"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://proxy:3128", "http://proxy:3128"),
        ("http://u:p@proxy:3128/x?y", "http://u:***@proxy:3128"),
        ("http://u:p/q#r?s@proxy:3128", "http://u:***@proxy:3128"),
        ("u:p@proxy", "u:***@proxy"),
        ("http://agent:Sup3rSecret", "http://agent:***"),
        ("socks5://agent:Sup3rSecret/", "socks5://agent:***"),
        ("http://[::1]:3128", "http://[::1]:3128"),
        ("proxy:3128", "proxy:3128"),
    ],
)
def test_redact_proxy_keeps_the_user_and_drops_the_rest(value: str, shown: str) -> None:
    """redact_proxy keeps scheme, user and host:port, and hides the password even in malformed values."""
    assert redact_proxy(value) == shown
