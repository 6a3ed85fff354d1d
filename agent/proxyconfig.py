"""Which forward proxy, if any, a request goes through, and why. Pure: the environment is passed in.

The variables and their precedence are Go's (``httpproxy.FromEnvironment``): ``HTTP_PROXY`` then
``http_proxy``, ``HTTPS_PROXY`` then ``https_proxy``, ``NO_PROXY`` then ``no_proxy``; the first
non-empty one wins, so upper case wins. ``https://`` URLs use the HTTPS proxy, ``http://`` URLs the
HTTP proxy; other schemes never use one. A proxy value without a scheme (``proxy:3128``) means
``http://proxy:3128``. NO_PROXY is matched by :mod:`agent.noproxy`.

Go also refuses HTTP_PROXY when ``REQUEST_METHOD`` is set (a CGI handler, where a client can set
the ``Proxy:`` header and so HTTP_PROXY). The agent is never a CGI handler, so that rule is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from agent.noproxy import NoProxy, split_target


@dataclass(frozen=True, slots=True)
class ProxyDecision:
    """The proxy URL a request uses (None: direct), and a sentence saying why."""

    proxy: str | None
    reason: str

    @property
    def display(self) -> str:
        """The proxy URL without any password, fit for printing, or ``direct``."""
        return "direct" if self.proxy is None else redact_proxy(self.proxy)

    def __repr__(self) -> str:
        proxy = None if self.proxy is None else redact_proxy(self.proxy)
        return f"ProxyDecision(proxy={proxy!r}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """HTTP_PROXY, HTTPS_PROXY and NO_PROXY as read once from the environment."""

    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    #: The variable each value came from, for messages (``https_proxy`` when only lower case was set).
    http_proxy_var: str = "HTTP_PROXY"
    https_proxy_var: str = "HTTPS_PROXY"
    no_proxy_var: str = "NO_PROXY"
    _rules: NoProxy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rules", NoProxy.parse(self.no_proxy))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProxyConfig:
        """Read the three variables, upper case first, like Go's ``FromEnvironment``."""
        http_var, http = _first(environ, "HTTP_PROXY", "http_proxy")
        https_var, https = _first(environ, "HTTPS_PROXY", "https_proxy")
        no_var, no = _first(environ, "NO_PROXY", "no_proxy")
        return cls(http, https, no, http_var, https_var, no_var)

    def decide(self, url: str) -> ProxyDecision:
        """Return the proxy for ``url`` and the reason, following Go's ``ProxyFunc``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "https":
            value, var = self.https_proxy, self.https_proxy_var
        elif scheme == "http":
            value, var = self.http_proxy, self.http_proxy_var
        else:
            return ProxyDecision(None, f"{scheme or 'scheme-less'} URLs never use a proxy")
        proxy = parse_proxy(value)
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
            f"https_proxy={redact_proxy(self.https_proxy)!r}, no_proxy={self.no_proxy!r})"
        )


def parse_proxy(value: str) -> str | None:
    """Normalise a proxy value like Go's ``parseProxy``: add ``http://`` when it has no scheme or host."""
    value = value.strip()
    if not value:
        return None
    try:
        parts = urlsplit(value)
        usable = bool(parts.scheme and parts.netloc)
    except ValueError:
        usable = False
    if usable:
        return value
    try:
        urlsplit("http://" + value)
    except ValueError:
        return None
    return "http://" + value


def redact_proxy(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (the user name stays, it helps debugging)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable proxy URL>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return SplitResult(
        parts.scheme, f"{user}:***@{hostport}", parts.path, parts.query, parts.fragment
    ).geturl()


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        if value := environ.get(name, ""):
            return name, value
    return names[0], ""
