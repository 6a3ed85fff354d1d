"""The real client behind trusted proxies: ``Forwarded`` (RFC 7239) or ``X-Forwarded-For``.

A forwarding header is believed only when the TCP peer is one of ``server.trusted_proxies``
(addresses or CIDRs). The client is then found from the right: the rightmost address in the chain
``header addresses..., peer`` that is *not* a trusted proxy, because every hop appends, and only the
hops we trust wrote the part to the right of it. An untrusted peer's headers are ignored entirely,
so a caller cannot choose its own rate-limit bucket or audit ``source``. ``Forwarded`` wins over
``X-Forwarded-For`` when both are present; a malformed or obfuscated (``unknown``, ``_hidden``)
element stops the walk at the last address known to be good.

:class:`ForwardedClients` is ASGI middleware: it rewrites ``scope["client"]`` before anything else
reads it (the gate, the limiter, the audit), and keeps the TCP peer in ``scope["keysvc.peer"]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from keysvc.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PEER_KEY = "keysvc.peer"


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``server.trusted_proxies`` as networks; a bad entry is a ConfigError naming it."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"server.trusted_proxies: {entry!r} is not an IP address or CIDR") from exc
    return tuple(networks)


def _address(text: str) -> str | None:
    """A bare IP from ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80`` or ``2001:db8::1``; else None."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def forwarded_for(header: str) -> list[str | None]:
    """The ``for=`` values of an RFC 7239 header, left to right (None where one is not an address)."""
    found: list[str | None] = []
    for element in header.split(","):
        value: str | None = None
        for pair in element.split(";"):
            name, _, raw = pair.strip().partition("=")
            if name.lower() == "for":
                value = _address(raw)
        found.append(value)
    return found


def x_forwarded_for(header: str) -> list[str | None]:
    """The addresses of an ``X-Forwarded-For`` header, left to right (None where one is not an address)."""
    return [_address(part) for part in header.split(",")]


def real_client(peer: str, chain: Sequence[str | None], trusted: Sequence[Network]) -> str:
    """Walk ``chain + [peer]`` from the right past trusted proxies; return the first untrusted address."""

    def is_trusted(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in trusted)

    if not trusted or _address(peer) is None or not is_trusted(peer):
        return peer
    client = peer
    for address in reversed(chain):
        if address is None:
            return client
        client = address
        if not is_trusted(address):
            return address
    return client


class ForwardedClients:
    """ASGI middleware that puts the real client into ``scope["client"]``."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network]) -> None:
        self.app = app
        self._trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the client of an HTTP scope from a trusted peer's forwarding headers."""
        if scope["type"] == "http" and self._trusted and scope.get("client"):
            peer_host, peer_port = scope["client"]
            headers: dict[bytes, str] = {}
            for key, value in scope.get("headers", []):
                name = bytes(key).lower()
                text = bytes(value).decode("latin-1")
                headers[name] = f"{headers[name]},{text}" if name in headers else text
            if b"forwarded" in headers:
                chain = forwarded_for(headers[b"forwarded"])
            elif b"x-forwarded-for" in headers:
                chain = x_forwarded_for(headers[b"x-forwarded-for"])
            else:
                chain = []
            client = real_client(peer_host, chain, self._trusted)
            port = peer_port if client == peer_host else 0
            scope = {**scope, "client": (client, port), PEER_KEY: peer_host}
        await self.app(scope, receive, send)
