"""Open a connection to a target: direct, through an http:// or https:// proxy, or through SOCKS5.

The one place sockets are opened. What comes back is a byte stream that ``http.client`` can talk
HTTP over, plus what was verified on the way (:class:`Opened`):

=============  =================  ====================================================================
proxy          target             connection
=============  =================  ====================================================================
none           http / https       TCP to the target (then TLS to it, SNI and check by the target name)
``http://``    http               TCP to the proxy; requests go in absolute form (``PUT http://h/p``)
``http://``    https              TCP to the proxy, ``CONNECT h:port``, then TLS to the target inside
``https://``   http               TLS to the proxy (SNI and check by the proxy name), absolute form
``https://``   https              TLS to the proxy, ``CONNECT``, then TLS to the target inside (TLS in
                                  TLS, :mod:`agent.tlstunnel`)
``socks5://``  http / https       TCP to the proxy, SOCKS5 CONNECT to the address resolved here
``socks5h://`` http / https       the same, with the name sent for the proxy to resolve
=============  =================  ====================================================================

Proxy credentials go in ``Proxy-Authorization: Basic`` (CONNECT, absolute-form requests) or in the
SOCKS5 user/password exchange. Every failure is a :class:`~agent.errors.TransportError` whose
message names the proxy as ``scheme://user:***@host:port`` at most.
"""

from __future__ import annotations

import base64
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol, cast

from agent import socks5
from agent.errors import (
    ConnectError,
    ProxyAuthFailed,
    ProxyRefused,
    ProxyUntrusted,
    RequestTimeout,
    TransportError,
)
from agent.proxyvalue import ProxyURL
from agent.tlstunnel import TunnelledTLS

#: The longest CONNECT answer head the agent reads before giving up on the proxy.
MAX_CONNECT_HEAD = 64 * 1024


class Stream(Protocol):
    """What ``http.client`` needs of a connection: a socket, an SSL socket or a :class:`TunnelledTLS`."""

    def sendall(self, data: bytes, /) -> None: ...
    def settimeout(self, timeout: float | None, /) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request goes: scheme, host (no brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def hostport(self) -> str:
        """``host:port``, with brackets around an IPv6 literal."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Opened:
    """A connected stream, and one line per TLS session verified while opening it."""

    stream: Stream
    tls: tuple[str, ...] = ()


def basic_auth(proxy: ProxyURL) -> str | None:
    """The ``Proxy-Authorization`` value for ``proxy``'s credentials, or None without a user."""
    if proxy.username is None:
        return None
    pair = f"{proxy.username}:{proxy.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class Opener:
    """Opens connections with one TLS setup for targets and one for https:// proxies."""

    def __init__(self, target_tls: ssl.SSLContext, proxy_tls: ssl.SSLContext, connect_timeout: float) -> None:
        self._target_tls = target_tls
        self._proxy_tls = proxy_tls
        self._timeout = connect_timeout

    def open(self, target: Endpoint, proxy: ProxyURL | None) -> Opened:
        """Connect to ``target``, through ``proxy`` when given; raise TransportError subclasses."""
        if proxy is None:
            sock = self._tcp(target.host, target.port, target.hostport)
            return self._finish(sock, target, ())
        where = f"proxy {proxy.display}"
        sock = self._tcp(proxy.host, proxy.port, where)
        try:
            if proxy.is_socks:
                host = target.host if proxy.scheme == "socks5h" else self._resolve(target)
                creds = (proxy.username, proxy.password or "") if proxy.username is not None else None
                socks5.connect(sock, host, target.port, credentials=creds, where=where)
                return self._finish(sock, target, ())
            notes: tuple[str, ...] = ()
            if proxy.scheme == "https":
                sock = self._tls_to_proxy(sock, proxy, where)
                notes = (f"proxy {proxy.hostport}: {sock.version()}, certificate verified",)
            if target.scheme == "https":
                self._tunnel(sock, target, proxy, where)
            return self._finish(sock, target, notes)
        except TimeoutError as exc:
            sock.close()
            raise RequestTimeout(f"{where} did not answer within {self._timeout}s") from exc
        except OSError as exc:
            sock.close()
            raise ConnectError(f"{where} broke the connection: {_reason(exc)}") from exc
        except TransportError:
            sock.close()
            raise

    def _tcp(self, host: str, port: int, where: str) -> socket.socket:
        try:
            sock = socket.create_connection((host, port), timeout=self._timeout)
        except socket.gaierror as exc:
            raise ConnectError(f"cannot resolve {where}: {exc.strerror}") from exc
        except TimeoutError as exc:
            raise RequestTimeout(f"connecting to {where} timed out after {self._timeout}s") from exc
        except ConnectionRefusedError as exc:
            raise ConnectError(f"{where} refused the connection") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {_reason(exc)}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _resolve(self, target: Endpoint) -> str:
        """``socks5://``: resolve the target here and hand the proxy an address (curl's meaning).

        Go 1.19's net/http sends the name for ``socks5://`` too, so there socks5 and socks5h are one;
        the agent follows issue 11 and curl instead: only ``socks5h://`` lets the proxy resolve.
        """
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectError(f"cannot resolve {target.host}: {exc.strerror}") from exc
        return str(infos[0][4][0])

    def _tls_to_proxy(self, sock: socket.socket, proxy: ProxyURL, where: str) -> ssl.SSLSocket:
        try:
            return self._proxy_tls.wrap_socket(sock, server_hostname=proxy.host)
        except ssl.SSLCertVerificationError as exc:
            raise ProxyUntrusted(
                f"TLS to {where} failed: its certificate is not trusted ({exc.verify_message})"
            ) from exc
        except ssl.SSLError as exc:
            raise ProxyUntrusted(f"TLS to {where} failed: {exc.reason or type(exc).__name__}") from exc

    def _tunnel(self, sock: Stream, target: Endpoint, proxy: ProxyURL, where: str) -> None:
        head = f"CONNECT {target.hostport} HTTP/1.1\r\nHost: {target.hostport}\r\n"
        auth = basic_auth(proxy)
        if auth:
            head += f"Proxy-Authorization: {auth}\r\n"
        sock.sendall((head + "\r\n").encode("ascii", "replace"))
        status, reason = _read_connect_answer(sock, where)
        if status == 200:
            return
        if status in (401, 407):  # 407 is the standard; tinyproxy, for one, answers 401
            have = "were refused" if auth else "are missing"
            raise ProxyAuthFailed(
                f"{where} refused the CONNECT tunnel: {status} {reason} (credentials {have})"
            )
        raise ProxyRefused(f"{where} refused the CONNECT tunnel to {target.hostport}: {status} {reason}")

    def _finish(self, sock: Stream, target: Endpoint, notes: tuple[str, ...]) -> Opened:
        if target.scheme != "https":
            return Opened(sock, notes)
        try:
            if isinstance(sock, ssl.SSLSocket):  # TLS to an https:// proxy: TLS in TLS
                tunnelled = TunnelledTLS(sock, self._target_tls, target.host)
                inner, version = cast(Stream, tunnelled), tunnelled.version()
            else:
                wrapped = self._target_tls.wrap_socket(cast(socket.socket, sock), server_hostname=target.host)
                inner, version = wrapped, wrapped.version()
        except TimeoutError as exc:
            sock.close()
            raise RequestTimeout(f"TLS handshake with {target.hostport} timed out") from exc
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise ConnectError(
                f"TLS handshake with {target.hostport} failed: certificate not trusted ({exc.verify_message})"
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise ConnectError(f"TLS handshake with {target.hostport} failed: {_reason(exc)}") from exc
        return Opened(inner, (*notes, f"target {target.hostport}: {version}, certificate verified"))


def _read_connect_answer(sock: Stream, where: str) -> tuple[int, str]:
    """Read the proxy's answer head to CONNECT, one byte at a time so no TLS byte is swallowed."""
    makefile = getattr(sock, "makefile")  # noqa: B009 - sockets and SSL sockets both have it
    with makefile("rb", buffering=0) as raw:
        head = b""
        while not head.endswith(b"\r\n\r\n") and not head.endswith(b"\n\n"):
            byte = raw.read(1)
            if not byte:
                raise ProxyRefused(f"{where} closed the connection instead of answering CONNECT")
            head += byte
            if len(head) > MAX_CONNECT_HEAD:
                raise ProxyRefused(f"{where} sent an over-long answer to CONNECT")
    status_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProxyRefused(f"{where} did not answer CONNECT with HTTP ({status_line[:40]!r})")
    return int(parts[1]), (parts[2] if len(parts) > 2 else "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or type(exc).__name__)
    return getattr(exc, "strerror", None) or type(exc).__name__


__all__ = ["Endpoint", "Opened", "Opener", "Stream", "basic_auth"]
