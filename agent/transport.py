"""HTTP over the standard library's ``http.client``, direct or through a forward proxy.

The agent's only network adapter. ``https://`` targets behind a proxy go through a CONNECT tunnel
(TLS is end to end, the proxy sees only the host and port); ``http://`` targets behind a proxy are
sent in absolute form (``PUT http://host/path HTTP/1.1``) to the proxy. Only ``http://`` proxies
are supported. A proxy URL's user and password become ``Proxy-Authorization: Basic``; neither is
ever logged or put in an error message, and neither is any request header (the key travels in
``Authorization``).

TLS verification is always on (system CAs, or ``ca_file``). Connecting and each read have
timeouts. Response bodies are bounded. Idle keep-alive connections are reused per
(scheme, host, port, proxy); a request that fails on a reused connection before any answer
arrived (the server closed it while idle) is sent once more on a new connection.

Known limit: Python 3.11's ``http.client`` writes ``CONNECT`` for an IPv6 literal target without
brackets, so an ``https://[v6]/`` URL cannot be tunnelled; names and IPv4 are unaffected.

HTTP error statuses are answers and are returned; network failures raise
:class:`~agent.errors.TransportError` subclasses.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from agent.errors import (
    ConfigError,
    ConnectError,
    ConnectionLost,
    ProxyError,
    RequestTimeout,
    ResponseTooLarge,
    TransportError,
)
from agent.noproxy import split_target
from agent.proxyconfig import ProxyConfig, redact_proxy

#: Large enough for a grant answer with 64 signed URLs, small enough to never matter for memory.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Idle connections kept per (scheme, host, port, proxy).
MAX_IDLE_PER_KEY = 4

_PoolKey = tuple[str, str, int, str | None]


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status, headers (names lower-cased) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    url: str


class Transport:
    """Send requests directly or through the proxy ``proxies`` picks; thread-safe."""

    def __init__(
        self,
        proxies: ProxyConfig,
        *,
        timeout: float = 30.0,
        ca_file: str | None = None,
        connect_timeout: float | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._proxies = proxies
        self._timeout = timeout
        self._connect_timeout = connect_timeout if connect_timeout is not None else min(timeout, 10.0)
        self._max_body = max_body_bytes
        try:
            self._tls = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
            reason = exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
            raise ConfigError(f"ca_file {ca_file} cannot be used as a CA bundle: {reason}") from exc
        self._idle: dict[_PoolKey, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and return the answer; raises :class:`TransportError` on network failure."""
        target = _parse_target(url)
        proxy = self._proxies.decide(url).proxy
        key: _PoolKey = (target.scheme, target.host, target.port, proxy)
        read_timeout = self._timeout if timeout is None else timeout
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return self._exchange(conn, key, target, proxy, (method, headers, body, read_timeout))
            except _StaleConnectionError:
                pass  # the server closed the idle connection; try once on a new one
        conn = self._open(target, proxy, read_timeout)
        try:
            return self._exchange(conn, key, target, proxy, (method, headers, body, read_timeout))
        except _StaleConnectionError as exc:
            raise ConnectionLost(f"{target.host}:{target.port} closed the connection at once") from exc

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            pools, self._idle = self._idle, {}
        for conns in pools.values():
            for conn in conns:
                conn.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_idle(self, key: _PoolKey) -> http.client.HTTPConnection | None:
        with self._lock:
            conns = self._idle.get(key)
            return conns.pop() if conns else None

    def _give_back(self, key: _PoolKey, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < MAX_IDLE_PER_KEY:
                conns.append(conn)
                return
        conn.close()

    def _open(self, target: _Target, proxy: str | None, read_timeout: float) -> http.client.HTTPConnection:
        where = f"{target.host}:{target.port}"
        conn: http.client.HTTPConnection
        if proxy is None:
            conn = self._connection(target.scheme, target.host, target.port)
        else:
            proxy_host, proxy_port, auth = _parse_proxy(proxy)
            where = f"proxy {redact_proxy(proxy)}"
            conn = self._connection(target.scheme, proxy_host, proxy_port)
            if target.scheme == "https":
                tunnel_headers = {"Proxy-Authorization": auth} if auth else None
                conn.set_tunnel(target.host, target.port, headers=tunnel_headers)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise RequestTimeout(f"connecting to {where} timed out after {self._connect_timeout}s") from exc
        except ssl.SSLError as exc:
            conn.close()
            raise ConnectError(
                f"TLS handshake with {target.host}:{target.port} failed: {exc.reason}"
            ) from exc
        except OSError as exc:
            conn.close()
            raise _connect_error(exc, where, proxy is not None and target.scheme == "https") from exc
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        return conn

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self._connect_timeout, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=self._connect_timeout)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        key: _PoolKey,
        target: _Target,
        proxy: str | None,
        call: tuple[str, Mapping[str, str] | None, bytes | None, float],
    ) -> Response:
        method, headers, body, read_timeout = call
        where = f"{target.host}:{target.port}"
        send_headers = dict(headers or {})
        path = target.path
        if proxy is not None and target.scheme == "http":
            path = target.url  # absolute form, as a forward proxy expects
            auth = _parse_proxy(proxy)[2]
            if auth:
                send_headers["Proxy-Authorization"] = auth
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        answered = False
        try:
            conn.request(method, path, body=body, headers=send_headers)
            response = conn.getresponse()
            answered = True
            data = _read_bounded(response, self._max_body)
        except TimeoutError as exc:
            conn.close()
            raise RequestTimeout(f"{method} to {where} timed out after {read_timeout}s") from exc
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            conn.close()
            if not answered:
                raise _StaleConnectionError from exc
            raise ConnectionLost(f"{where} closed the connection mid-response") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ConnectionLost(f"{method} to {where} failed: {type(exc).__name__}") from exc
        if len(data) > self._max_body:
            conn.close()
            raise ResponseTooLarge(f"response from {where} exceeds {self._max_body} bytes")
        answer = Response(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=data,
        )
        if response.will_close:
            conn.close()
        else:
            self._give_back(key, conn)
        return answer


class _StaleConnectionError(TransportError):
    """Internal: the connection failed before any answer; safe to try once on a new one."""


def _read_bounded(response: http.client.HTTPResponse, limit: int) -> bytes:
    """Read the whole body, or stop as soon as it is known to exceed ``limit`` bytes."""
    pieces: list[bytes] = []
    size = 0
    while size <= limit:
        piece = response.read(min(64 * 1024, limit + 1 - size))
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def _parse_target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConnectError("malformed URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise ConnectError(f"only http:// and https:// URLs are supported, not {scheme or 'none'!r}")
    host, port = split_target(scheme, parts.netloc)
    if not port.isdigit():
        raise ConnectError(f"bad port in URL for host {host}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, int(port), path, url)


def _parse_proxy(proxy: str) -> tuple[str, int, str | None]:
    """Return the proxy's host, port and ``Proxy-Authorization`` value (None without credentials)."""
    try:
        parts = urlsplit(proxy)
        port = parts.port or 80
    except ValueError as exc:
        raise ProxyError(f"proxy URL {redact_proxy(proxy)} is malformed") from exc
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ProxyError(
            f"proxy {redact_proxy(proxy)} is not usable: only http:// forward proxies are supported"
        )
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(pair).decode("ascii")
    return parts.hostname, port, auth


def _connect_error(exc: OSError, where: str, tunnel: bool) -> TransportError:
    message = str(exc)
    if tunnel and message.startswith("Tunnel connection failed"):
        status = message.removeprefix("Tunnel connection failed:").strip()
        return ProxyError(f"{where} refused the CONNECT tunnel: {status}")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve {where}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(f"{where} refused the connection")
    reason = exc.strerror or type(exc).__name__
    return ConnectError(f"cannot connect to {where}: {reason}")
