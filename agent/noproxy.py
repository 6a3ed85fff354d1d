"""NO_PROXY matching with the rules of Go's ``golang.org/x/net/http/httpproxy``. Pure: no I/O.

Operators set ``NO_PROXY`` expecting what Go programs on the node (kubelet, containerd) do, and no Python
HTTP stack does all of it, so the rules are ported here and tested against Go's own test table:

- a request to ``localhost`` or to a loopback IP literal (127.0.0.0/8, ``::1``) never uses a proxy;
- ``*`` anywhere in the list disables proxying altogether;
- an IP literal (``10.1.2.3``, ``2001:db8::1``) or a CIDR (``10.0.0.0/8``, ``2002:db8:a::/64``)
  matches requests to IP literals only, never names that resolve to them;
- ``host:port`` and ``[ipv6]:port`` match only that port; without a port, any port;
- ``example.com`` matches ``example.com`` and every subdomain; ``.example.com`` and
  ``*.example.com`` match subdomains only; matching is case-insensitive and never a bare suffix
  (``ample.com`` does not match ``example.com``);
- an IPv6 host with a zone (``[fe80::1%25eth0]``) is an IP literal, so domain entries never match it;
- entries are separated by commas, trimmed, and malformed ones are ignored, as Go does;
- non-ASCII names are compared in their IDNA (punycode) form on both sides (Python's IDNA 2003
  codec; Go uses UTS #46, which differs only for rare characters such as ``ß``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The port a URL scheme implies when the URL names none (Go's ``portMap``).
DEFAULT_PORTS = {"http": "80", "https": "443", "socks5": "1080"}


@dataclass(frozen=True, slots=True)
class Bypass:
    """Why a request goes direct: the NO_PROXY ``entry`` that matched (None for a built-in rule)."""

    entry: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed NO_PROXY entry."""

    entry: str
    kind: Literal["all", "cidr", "ip", "domain"]
    network: IPNetwork | None = None
    ip: IPAddress | None = None
    domain: str = ""
    port: str = ""
    match_host: bool = False

    def matches(self, host: str, port: str, ip: IPAddress | None) -> bool:
        """Return True if this entry covers ``host``:``port`` (``ip`` is set for IP literals)."""
        if self.kind == "all":
            return True
        if self.kind == "cidr":
            return ip is not None and self.network is not None and ip in self.network
        if self.kind == "ip":
            return ip is not None and ip == self.ip and self.port in ("", port)
        if ip is not None:
            return False
        covered = host.endswith(self.domain) or (self.match_host and host == self.domain[1:])
        return covered and self.port in ("", port)


@dataclass(frozen=True, slots=True)
class NoProxy:
    """A parsed NO_PROXY value; ``bypass`` decides one request."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, value: str) -> NoProxy:
        """Parse a comma-separated NO_PROXY value, ignoring malformed entries like Go does."""
        rules: list[Rule] = []
        for raw in value.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls((Rule(entry, "all"),))
            rule = _parse_entry(entry)
            if rule is not None:
                rules.append(rule)
        return cls(tuple(rules))

    def bypass(self, host: str, port: str) -> Bypass | None:
        """Return why a request to ``host``:``port`` must go direct, or None to use the proxy.

        ``host`` is the URL's host name without brackets (as :func:`split_target` returns it).
        """
        if host == "localhost":
            return Bypass(None, "'localhost' never uses a proxy (Go's rule)")
        ip = parse_ip(host, allow_zone=True)
        if ip is not None and ip.is_loopback:
            return Bypass(None, f"loopback address {host} never uses a proxy (Go's rule)")
        name = host.strip().lower()
        # Go tries every IP entry before any domain entry; the reason names the first that matched.
        ordered = [r for r in self.rules if r.kind in ("all", "cidr", "ip")] if ip is not None else []
        ordered += [r for r in self.rules if r.kind in ("all", "domain")]
        for rule in ordered:
            if rule.matches(name, port, ip):
                return Bypass(rule.entry, f"NO_PROXY entry {rule.entry!r} matched {_join(host, port)}")
        return None


def parse_ip(text: str, *, allow_zone: bool = False) -> IPAddress | None:
    """Parse an IP literal as Go does; IPv4-mapped IPv6 addresses compare as their IPv4 form.

    A zone (``fe80::1%eth0``) is accepted only for request hosts (Go's ``netip.ParseAddr``) and is
    ignored for comparisons, as Go's ``net.IP`` drops it.
    """
    address, percent, zone = text.partition("%")
    if percent and (not allow_zone or not zone or ":" not in address):
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def split_host_port(text: str) -> tuple[str, str] | None:
    """Split ``host:port`` or ``[host]:port`` like Go's ``net.SplitHostPort``; None if it has no port."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            return None
        host, port = text[1:close], text[close + 2 :]
        if "[" in host or "]" in port or "[" in port:
            return None
        return host, port
    host, colon, port = text.rpartition(":")
    if not colon or ":" in host or "[" in text or "]" in text:
        return None
    return host, port


def split_target(scheme: str, netloc: str) -> tuple[str, str]:
    """Return a URL's (host, port) as Go's ``canonicalAddr`` sees it: no brackets, IDNA, default port."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.find("]")
        host = hostport[1:close] if close > 0 else hostport[1:]
        rest = hostport[close + 1 :] if close > 0 else ""
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, colon, port = hostport.rpartition(":")
        if not colon:
            host, port = hostport, ""
    host = _unquote_zone(host)
    return to_ascii(host), port or DEFAULT_PORTS.get(scheme.lower(), "")


def to_ascii(name: str) -> str:
    """Return ``name`` in IDNA form when it has non-ASCII characters (kept as is if that fails)."""
    if name.isascii():
        return name
    dot = "." if name.startswith(".") else ""
    try:
        return dot + name[len(dot) :].encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _parse_entry(entry: str) -> Rule | None:
    if "/" in entry:
        network = _parse_cidr(entry)
        if network is not None:
            return Rule(entry, "cidr", network=network)
    split = split_host_port(entry)
    host, port = split if split is not None else (entry, "")
    if split is not None and not host:
        return None  # ":1" and the like: no host part, Go ignores the entry.
    ip = parse_ip(host)
    if ip is not None:
        return Rule(entry, "ip", ip=ip, port=port)
    if not host:
        return None
    if host.startswith("*."):
        host = host[1:]
    match_host = not host.startswith(".")
    domain = to_ascii(host if not match_host else "." + host)
    return Rule(entry, "domain", domain=domain, port=port, match_host=match_host)


def _parse_cidr(entry: str) -> IPNetwork | None:
    address, _, bits = entry.partition("/")
    if not bits.isdigit() or "%" in address:
        return None  # Go's ParseCIDR wants a decimal prefix length and no zone.
    try:
        return ipaddress.ip_network(f"{address}/{int(bits)}", strict=False)
    except ValueError:
        return None


def _unquote_zone(host: str) -> str:
    # Go's url.Parse decodes "%25" in a bracketed IPv6 host into the zone separator "%".
    return host.replace("%25", "%", 1) if ":" in host else host


def _join(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
