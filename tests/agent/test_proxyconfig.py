"""Proxy choice per URL, with Go's proxyForURL and FromEnvironment tests ported."""

from __future__ import annotations

import pytest

from agent.errors import ConfigError
from agent.proxyconfig import ProxyConfig

# Go's proxyForURLTests; the CGI rows are in test_cgi_rule_*. The expected proxy is shown with its
# port made explicit (Go's default ports). Go's "foo://host" row ("preserve unknown schemes") is
# test_unknown_scheme_is_a_config_error: Go 1.19 really turns it into the http proxy host "foo".
# (http_proxy, https_proxy, no_proxy, request URL, expected proxy or None)
GO_PROXY_FOR_URL = [
    ("127.0.0.1:8080", "", "", "http://example.com", "http://127.0.0.1:8080"),
    ("cache.corp.example.com:1234", "", "", "http://example.com", "http://cache.corp.example.com:1234"),
    ("cache.corp.example.com", "", "", "http://example.com", "http://cache.corp.example.com:80"),
    ("localhost", "", "", "http://example.com", "http://localhost:80"),
    ("https://cache.corp.example.com", "", "", "http://example.com", "https://cache.corp.example.com:443"),
    ("http://127.0.0.1:8080", "", "", "http://example.com", "http://127.0.0.1:8080"),
    ("https://127.0.0.1:8080", "", "", "http://example.com", "https://127.0.0.1:8080"),
    ("socks5://127.0.0.1", "", "", "http://example.com", "socks5://127.0.0.1:1080"),
    ("http.proxy.tld", "secure.proxy.tld", "", "http://insecure.tld/", "http://http.proxy.tld:80"),
    ("http.proxy.tld", "secure.proxy.tld", "", "https://secure.tld/", "http://secure.proxy.tld:80"),
    ("http.proxy.tld", "https://secure.proxy.tld", "", "https://secure.tld/", "https://secure.proxy.tld:443"),
    ("http.proxy.tld", "", "", "https://secure.tld/", None),
    ("http.proxy.tld", "", "", "ftp://insecure.tld/", None),
    ("", "", "", "http://example.com", None),
    ("proxy", "", "example.com", "http://example.com/", None),
    ("proxy", "", ".example.com", "http://example.com/", "http://proxy:80"),
    ("proxy", "", "ample.com", "http://example.com/", "http://proxy:80"),
    ("proxy", "", "example.com", "http://foo.example.com/", None),
    ("proxy", "", ".foo.com", "http://example.com/", "http://proxy:80"),
    ("proxy", "", ".示例.com", "http://www.示例.com", None),
    ("proxy", "", "xn--fsq092h.com", "http://www.示例.com", None),
    ("proxy", "", "示例.com", "http://www.xn--fsq092h.com", None),
    ("proxy", "", "example.com", "http://[1000::%25.example.com]:123", "http://proxy:80"),
]


@pytest.mark.parametrize(("http", "https", "no", "url", "expected"), GO_PROXY_FOR_URL)
def test_go_proxy_for_url_table(http: str, https: str, no: str, url: str, expected: str | None) -> None:
    """Every non-CGI row of Go's proxyForURLTests picks Go's proxy."""
    proxy = ProxyConfig(http, https, no).decide(url).proxy
    assert (None if proxy is None else proxy.display) == expected


def test_go_from_environment_upper_case() -> None:
    """Go's TestFromEnvironment: the upper-case variables are read."""
    env = {"HTTP_PROXY": "httpproxy", "HTTPS_PROXY": "httpsproxy", "NO_PROXY": "noproxy"}
    config = ProxyConfig.from_env(env)
    assert (config.http_proxy, config.https_proxy, config.no_proxy) == ("httpproxy", "httpsproxy", "noproxy")


def test_go_from_environment_lower_case() -> None:
    """Go's TestFromEnvironmentLowerCase: lower-case variables are read when upper case is absent."""
    env = {"http_proxy": "httpproxy", "https_proxy": "httpsproxy", "no_proxy": "noproxy"}
    config = ProxyConfig.from_env(env)
    assert (config.http_proxy, config.https_proxy, config.no_proxy) == ("httpproxy", "httpsproxy", "noproxy")
    assert (config.http_proxy_var, config.https_proxy_var, config.no_proxy_var) == (
        "http_proxy",
        "https_proxy",
        "no_proxy",
    )


def test_upper_case_wins_and_empty_upper_case_falls_through() -> None:
    """Upper case wins over lower case, but an empty upper-case value falls through, as Go's getEnvAny."""
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "NO_PROXY": "", "no_proxy": "x"}
    config = ProxyConfig.from_env(env)
    assert config.https_proxy == "http://upper:1"
    assert config.no_proxy == "x"
    assert config.no_proxy_var == "no_proxy"


def test_reason_names_variable_and_entry() -> None:
    """Reasons say which variable applied and which NO_PROXY entry sent the request direct."""
    config = ProxyConfig.from_env({"https_proxy": "http://proxy:3128", "no_proxy": "keysvc.internal"})
    direct = config.decide("https://keysvc.internal/v1/ingest/grants")
    assert direct.proxy is None
    assert "no_proxy entry 'keysvc.internal' matched" in direct.reason
    proxied = config.decide("https://storage.googleapis.com/b/o")
    assert proxied.display == "http://proxy:3128"
    assert "https_proxy applies to https:// URLs" in proxied.reason


def test_reason_when_no_proxy_is_set() -> None:
    """A URL goes direct with the reason that the scheme's variable is not set."""
    decision = ProxyConfig.from_env({"HTTP_PROXY": "proxy:1"}).decide("https://example.com")
    assert decision.proxy is None
    assert decision.reason == "HTTPS_PROXY is not set"
    assert decision.display == "direct"


def test_passwords_never_show_in_reprs() -> None:
    """The proxy password is redacted from reprs and from the display form of a decision."""
    config = ProxyConfig.from_env({"HTTPS_PROXY": "http://agent:s3cret@proxy:3128"})
    decision = config.decide("https://storage.googleapis.com/")
    assert decision.proxy is not None
    assert (decision.proxy.username, decision.proxy.password) == ("agent", "s3cret")
    for text in (repr(config), repr(decision), decision.display, decision.reason, str(decision.proxy)):
        assert "s3cret" not in text
    assert decision.display == "http://agent:***@proxy:3128"


def test_unknown_scheme_is_a_config_error() -> None:
    """An unknown proxy scheme stops the agent: Go would dial a proxy host named after the scheme."""
    with pytest.raises(ConfigError, match=r"HTTP_PROXY=foo://host .*unsupported proxy scheme 'foo'"):
        ProxyConfig("foo://host", "", "")


def test_cgi_rule_fails_http_requests_while_http_proxy_is_set() -> None:
    """Go's CGI rows: with REQUEST_METHOD set an http:// request fails, even one NO_PROXY would bypass."""
    config = ProxyConfig.from_env(
        {"REQUEST_METHOD": "GET", "HTTP_PROXY": "proxy:1", "NO_PROXY": "example.com"}
    )
    with pytest.raises(ConfigError, match="REQUEST_METHOD is set, so HTTP_PROXY is refused"):
        config.decide("http://example.com")


def test_cgi_rule_leaves_https_and_an_unset_http_proxy_alone() -> None:
    """Go's CGI rows: HTTPS_PROXY still applies, and without HTTP_PROXY http:// goes direct."""
    config = ProxyConfig.from_env({"REQUEST_METHOD": "GET", "HTTPS_PROXY": "secure:2"})
    assert config.decide("https://example.com").display == "http://secure:2"
    assert config.decide("http://example.com").proxy is None
