"""The client side of SOCKS5 (RFC 1928) with username/password authentication (RFC 1929).

Run on a connected socket to the SOCKS server; when it returns, the socket is a byte stream to the
target. Only the CONNECT command is used. ``socks5h://`` sends the host name for the server to
resolve; ``socks5://`` sends an address the agent resolved itself, as curl does. The password is
never part of an error message.
"""

from __future__ import annotations

import ipaddress
import socket

from agent.errors import ProxyAuthFailed, ProxyRefused

VERSION = 5
NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CONNECT = 0x01
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04

#: RFC 1928 reply codes.
REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the target",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


def connect(
    sock: socket.socket,
    host: str,
    port: int,
    *,
    credentials: tuple[str, str] | None,
    where: str,
) -> None:
    """Have the SOCKS server on ``sock`` connect to ``host:port``; ProxyAuthFailed or ProxyRefused if not."""
    methods = bytes([NO_AUTH, USER_PASS]) if credentials else bytes([NO_AUTH])
    sock.sendall(bytes([VERSION, len(methods)]) + methods)
    version, method = _read(sock, 2, where)
    if version != VERSION:
        raise ProxyRefused(f"{where} does not speak SOCKS5 (it answered version {version})")
    if method == USER_PASS and credentials:
        _authenticate(sock, credentials, where)
    elif method != NO_AUTH:
        if credentials:
            raise ProxyAuthFailed(f"{where} accepts neither user/password nor no authentication")
        raise ProxyAuthFailed(f"{where} wants credentials: put user:password in the proxy URL")
    sock.sendall(bytes([VERSION, CONNECT, 0]) + encode_address(host) + port.to_bytes(2, "big"))
    version, reply, _, atyp = _read(sock, 4, where)
    if version != VERSION:
        raise ProxyRefused(f"{where} sent a malformed SOCKS5 reply")
    if reply != 0:
        reason = REPLIES.get(reply, f"reply code {reply}")
        raise ProxyRefused(f"{where} refused to connect to {_shown(host)}:{port}: {reason}")
    _skip_bound_address(sock, atyp, where)


def encode_address(host: str) -> bytes:
    """The address field: an IPv4 or IPv6 literal as such, any other name as a domain (socks5h)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            name = host.encode("idna")
        except UnicodeError:
            raise ProxyRefused(f"host name {host[:64]!r} cannot be sent to a SOCKS5 proxy") from None
        if not 0 < len(name) < 256:
            raise ProxyRefused(f"host name {host[:64]!r} is too long for SOCKS5") from None
        return bytes([ATYP_DOMAIN, len(name)]) + name
    if ip.version == 4:
        return bytes([ATYP_IPV4]) + ip.packed
    return bytes([ATYP_IPV6]) + ip.packed


def _authenticate(sock: socket.socket, credentials: tuple[str, str], where: str) -> None:
    user, password = (part.encode() for part in credentials)
    if len(user) > 255 or len(password) > 255:
        raise ProxyAuthFailed(f"{where}: SOCKS5 user names and passwords are at most 255 bytes")
    sock.sendall(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
    _, status = _read(sock, 2, where)
    if status != 0:
        raise ProxyAuthFailed(f"{where} refused the SOCKS5 user name or password")


def _skip_bound_address(sock: socket.socket, atyp: int, where: str) -> None:
    if atyp == ATYP_IPV4:
        _read(sock, 4 + 2, where)
    elif atyp == ATYP_IPV6:
        _read(sock, 16 + 2, where)
    elif atyp == ATYP_DOMAIN:
        (length,) = _read(sock, 1, where)
        _read(sock, length + 2, where)
    else:
        raise ProxyRefused(f"{where} sent a malformed SOCKS5 reply")


def _read(sock: socket.socket, count: int, where: str) -> bytes:
    data = b""
    while len(data) < count:
        piece = sock.recv(count - len(data))
        if not piece:
            raise ProxyRefused(f"{where} closed the connection during the SOCKS5 handshake")
        data += piece
    return data


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
