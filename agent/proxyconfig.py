"""Which proxy, if any, a request goes through, and why. Pure: the environment is passed in.

The variables and their precedence are Go's (``httpproxy.FromEnvironment``): ``HTTP_PROXY`` then
``http_proxy``, ``HTTPS_PROXY`` then ``https_proxy``, ``NO_PROXY`` then ``no_proxy``; the first
non-empty one wins, so upper case wins. ``https://`` URLs use the HTTPS proxy, ``http://`` URLs the
HTTP proxy; other schemes never use one. Each value is parsed once, when the configuration is read,
by :func:`agent.proxyvalue.parse_proxy_value` (``proxy:3128`` means ``http://proxy:3128``; a value
Go would fail on is a :class:`~agent.errors.ConfigError`). NO_PROXY is matched by :mod:`agent.noproxy`.

Go's CGI rule is kept: when ``REQUEST_METHOD`` is set (a CGI handler, where a client can set the
``Proxy:`` header and so HTTP_PROXY), Go fails every ``http://`` request while HTTP_PROXY is set,
before NO_PROXY is looked at. :meth:`ProxyConfig.decide` raises ConfigError there, and the
configuration check runs it for the agent's own endpoints at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.errors import ConfigError
from agent.noproxy import NoProxy, split_target
from agent.proxyvalue import ProxyURL, parse_proxy_value, redact_proxy

__all__ = ["ProxyConfig", "ProxyDecision", "ProxyURL", "redact_proxy"]


@dataclass(frozen=True, slots=True)
class ProxyDecision:
    """The proxy a request uses (None: direct), and a sentence saying why."""

    proxy: ProxyURL | None
    reason: str

    @property
    def display(self) -> str:
        """The proxy as ``scheme://[user:***@]host:port``, fit for printing, or ``direct``."""
        return "direct" if self.proxy is None else self.proxy.display


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and REQUEST_METHOD) as read once from the environment."""

    http_proxy: str = field(default="", repr=False)
    https_proxy: str = field(default="", repr=False)
    no_proxy: str = ""
    #: The variable each value came from, for messages (``https_proxy`` when only lower case was set).
    http_proxy_var: str = "HTTP_PROXY"
    https_proxy_var: str = "HTTPS_PROXY"
    no_proxy_var: str = "NO_PROXY"
    #: ``REQUEST_METHOD`` is set: Go's CGI rule applies (see the module docstring).
    cgi: bool = False
    _rules: NoProxy = field(init=False, repr=False, compare=False)
    _http: ProxyURL | None = field(init=False, repr=False, compare=False)
    _https: ProxyURL | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rules", NoProxy.parse(self.no_proxy))
        object.__setattr__(self, "_http", parse_proxy_value(self.http_proxy, self.http_proxy_var))
        object.__setattr__(self, "_https", parse_proxy_value(self.https_proxy, self.https_proxy_var))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProxyConfig:
        """Read the variables, upper case first, like Go's ``FromEnvironment``; ConfigError if unusable."""
        http_var, http = _first(environ, "HTTP_PROXY", "http_proxy")
        https_var, https = _first(environ, "HTTPS_PROXY", "https_proxy")
        no_var, no = _first(environ, "NO_PROXY", "no_proxy")
        cgi = bool(environ.get("REQUEST_METHOD", ""))
        return cls(http, https, no, http_var, https_var, no_var, cgi)

    @property
    def proxies(self) -> tuple[ProxyURL, ...]:
        """The distinct proxies configured, HTTP_PROXY's first."""
        found = [p for p in (self._http, self._https) if p is not None]
        return tuple(dict.fromkeys(found))

    def decide(self, url: str) -> ProxyDecision:
        """Return the proxy for ``url`` and the reason, following Go's ``proxyForURL``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "https":
            proxy, var = self._https, self.https_proxy_var
        elif scheme == "http":
            proxy, var = self._http, self.http_proxy_var
            if proxy is not None and self.cgi:
                raise ConfigError(
                    f"REQUEST_METHOD is set, so {var} is refused for http:// URLs (Go's CGI rule, "
                    "golang.org/s/cgihttpproxy): unset REQUEST_METHOD in the agent's environment"
                )
        else:
            return ProxyDecision(None, f"{scheme or 'scheme-less'} URLs never use a proxy")
        if proxy is None:
            return ProxyDecision(None, f"{var} is not set")
        host, port = split_target(scheme, parts.netloc)
        bypass = self._rules.bypass(host, port)
        if bypass is not None:
            if bypass.entry is not None:
                return ProxyDecision(None, bypass.reason.replace("NO_PROXY", self.no_proxy_var, 1))
            return ProxyDecision(None, bypass.reason)
        no_proxy = (
            f"no {self.no_proxy_var} entry matched" if self._rules.rules else f"{self.no_proxy_var} is empty"
        )
        return ProxyDecision(proxy, f"{var} applies to {scheme}:// URLs and {no_proxy}")

    def __repr__(self) -> str:
        return (
            f"ProxyConfig(http_proxy={redact_proxy(self.http_proxy)!r}, "
            f"https_proxy={redact_proxy(self.https_proxy)!r}, no_proxy={self.no_proxy!r}, cgi={self.cgi})"
        )


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        if value := environ.get(name, ""):
            return name, value
    return names[0], ""
