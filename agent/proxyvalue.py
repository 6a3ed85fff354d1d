"""One proxy value (``HTTP_PROXY=...``) parsed into a :class:`ProxyURL`, or refused. Pure: no I/O.

The reference is Go's ``httpproxy.parseProxy`` plus what ``net/http``'s transport then does with
its result. Go parses the value with ``net/url``; when that fails, or the scheme is not ``http``,
``https`` or ``socks5``, it parses ``"http://" + value`` instead and uses that if it parses. So:

- ``proxy:3128``, ``user:pw@proxy:3128`` and ``proxy`` mean ``http://...``, as in Go;
- scheme names are case-insensitive (``SOCKS5://`` is ``socks5://``), as in Go;
- default ports are Go's: 80 for ``http``, 443 for ``https``, 1080 for ``socks5`` and ``socks5h``;
- user and password are percent-decoded, as Go's ``User.Username()`` and ``User.Password()``.

Where Go would fail the request, the value is a :class:`~agent.errors.ConfigError` (exit 2 at start):

- an unknown scheme (``ftp://h``, ``socks4://h``): Go's retry turns ``ftp`` into the proxy *host*,
  which fails to resolve;
- a value whose authority does not parse (an unescaped ``/``, ``#`` or ``?`` in a password, a
  non-numeric port, a space): again Go's retry makes the text before ``://`` the proxy host;
- a port above 65535 or 0, or no host at all: Go's dial fails;
- ``http:proxy:3128`` (no ``//``): Go keeps an opaque URL without a host, and the dial fails.

Two deliberate differences, both stricter or wider than Go, never looser:

- a value Go cannot parse at all (``%zz``, leading whitespace) makes Go silently go *direct*,
  around the proxy the operator configured; the agent refuses it at start instead;
- ``socks5h://`` means SOCKS5 with names resolved by the proxy, as in curl (Go's ``httpproxy``
  knows only ``socks5``, and its retry would make ``socks5h`` a host name).

A password never appears in a message or a ``repr``: :func:`redact_proxy` shows ``user:***@host``,
even for a value that does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from agent.errors import ConfigError

SCHEMES = ("http", "https", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

# Go's getScheme: a letter, then letters, digits, "+", "-" or ".".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
# Go's validUserinfo: unreserved, sub-delims, ":", "%" and "@" (percent escapes are checked apart).
_USERINFO = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:%@]*")
# Go's shouldEscape(encodeHost): what may appear unescaped in a registered name.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

#: Turns a reason into the ConfigError to raise, naming the variable and the redacted value.
_Refuse = Callable[[str], ConfigError]


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A usable proxy: scheme, host (no brackets), port, and credentials (decoded, never shown)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """``scheme://[user:***@]host:port``: safe for logs, messages and ``check`` output."""
        return f"{self.scheme}://{self._userinfo_display()}{self.hostport}"

    @property
    def hostport(self) -> str:
        """``host:port``, with brackets around an IPv6 literal."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_socks(self) -> bool:
        """True for ``socks5://`` and ``socks5h://``."""
        return self.scheme.startswith("socks5")

    def _userinfo_display(self) -> str:
        if self.username is None:
            return ""
        return f"{self.username}:***@" if self.password is not None else f"{self.username}@"

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"ProxyURL({self.display!r})"


def parse_proxy_value(value: str, variable: str = "the proxy variable") -> ProxyURL | None:
    """Parse a proxy variable's value; None when it is empty (go direct); ConfigError where Go fails."""
    if value == "":
        return None

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{variable}={redact_proxy(value)} is not a usable proxy URL: {why}")

    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        raise refuse("it contains whitespace or a control character (Go ignores or misreads such values)")
    scheme, sep, rest = value.partition("://")
    if not sep:
        head = value.partition(":")[0].lower()
        if head in SCHEMES and ":" in value:
            raise refuse(f"write {head}://host:port, with the two slashes")
        scheme, rest = "http", value
    if not _SCHEME.fullmatch(scheme):
        raise refuse("the scheme is not a valid URL scheme")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise refuse(f"unsupported proxy scheme {scheme!r}; use http, https, socks5 or socks5h")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    username, password = _credentials(userinfo, refuse) if at else (None, None)
    host, port = _host_port(hostport, scheme, refuse)
    return ProxyURL(scheme, host, port, username, password)


def _credentials(userinfo: str, refuse: _Refuse) -> tuple[str, str | None]:
    if not _USERINFO.fullmatch(userinfo):
        raise refuse(
            "the user or password holds a character that must be percent-encoded "
            "(write / as %2F, # as %23, ? as %3F, @ as %40)"
        )
    if _BAD_ESCAPE.search(userinfo):
        raise refuse("the user or password holds a malformed percent escape")
    user, colon, password = userinfo.partition(":")
    return unquote(user), unquote(password) if colon else None


def _host_port(hostport: str, scheme: str, refuse: _Refuse) -> tuple[str, int]:
    if hostport.startswith("["):
        host, bracket, tail = hostport[1:].partition("]")
        if not bracket or not host or not re.fullmatch(r"[0-9A-Fa-f:.]+(%25[A-Za-z0-9\-._~]+)?", host):
            raise refuse("the IPv6 address in brackets is malformed")
        host = unquote(host)
        if tail and not tail.startswith(":"):
            raise refuse("text follows the bracketed IPv6 address")
        port_text = tail[1:]
    else:
        host, _, port_text = hostport.partition(":")
        if ":" in port_text:
            raise refuse("the host:port part has more than one ':' (an unescaped '/', '?' or '#' earlier?)")
        if not host:
            raise refuse("it names no proxy host")
        if not _REG_NAME.fullmatch(host):
            raise refuse("the host name holds characters a host name cannot have")
    if port_text == "":
        return host, DEFAULT_PORTS[scheme]
    if not port_text.isascii() or not port_text.isdigit():
        raise refuse(
            "the port is not a number (an unescaped '/', '?' or '#' in the password cuts the URL short)"
        )
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise refuse("the port must be between 1 and 65535")
    return host, port


def redact_proxy(value: str) -> str:
    """Show a proxy value without its password: ``scheme://user:***@host:port``, whatever its shape.

    Works on values that do not parse: everything up to the last ``@`` is treated as user
    information, and only its part before the first ``:`` (the user name) is kept; anything after
    the host and port (a path, a query) is dropped, since a mistyped password may sit there too, and
    a "port" that is not a number (``http://user:secret`` with the host forgotten) is masked.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    userinfo, at, hostport = rest.rpartition("@")
    hostport = re.split(r"[/?#]", hostport, maxsplit=1)[0]
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else (hostport, "", "")
    if colon and not port.isdigit() and not host.startswith("["):
        # Not a port: most likely ``user:password`` with the ``@host`` forgotten. Never show it.
        hostport = f"{host}:***"
    shown = ""
    if at:
        user = re.split(r"[:/?#]", userinfo, maxsplit=1)[0]
        shown = f"{user}:***@"
    return f"{scheme}{sep}{shown}{hostport}"
