"""HTTP/1.1 over the standard library's ``http.client``, direct or through a proxy.

The agent's only HTTP adapter; :mod:`agent.connections` opens the connections: direct, through an
``http://`` or ``https://`` proxy (``https://`` targets through a CONNECT tunnel, so TLS is end to
end; ``http://`` targets in absolute form, ``PUT http://host/path``), or through ``socks5://`` and
``socks5h://``. Proxy credentials are never logged or put in an error message, and neither is any
request header (the key travels in ``Authorization``).

TLS verification is always on: targets against the system CAs or ``ca_file``; an ``https://``
proxy against ``proxy_ca_file``, else ``ca_file``, else the system CAs. Connecting and each read
have timeouts. Response bodies are bounded. Idle keep-alive connections are reused per
(scheme, host, port, proxy); a request that fails on a reused connection before any answer
arrived (the server closed it while idle) is sent once more on a new connection.

HTTP error statuses are answers and are returned; network failures raise
:class:`~agent.errors.TransportError` subclasses.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from agent.connections import Endpoint, Opened, Opener, basic_auth
from agent.errors import (
    ConfigError,
    ConnectError,
    ConnectionLost,
    ProxyAuthFailed,
    RequestTimeout,
    ResponseTooLarge,
    TransportError,
)
from agent.noproxy import split_target
from agent.proxyconfig import ProxyConfig
from agent.proxyvalue import ProxyURL

#: Large enough for a grant answer with 64 signed URLs, small enough to never matter for memory.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Idle connections kept per (scheme, host, port, proxy).
MAX_IDLE_PER_KEY = 4

_PoolKey = tuple[str, str, int, ProxyURL | None]


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status, headers (names lower-cased) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    #: One line per TLS session of the connection (to an https:// proxy, to the target), for ``check``.
    tls: tuple[str, ...] = ()


class Requester(Protocol):
    """What the rest of the agent needs of a :class:`Transport`: one request, one whole answer.

    The one declaration of this port; the uploader, the delivery, the runner and ``check`` take any
    object with this method, so their tests pass in a fake (``tests/agent/fakes.py``).
    """

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and return the whole answer."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    endpoint: Endpoint
    path: str
    url: str

    @property
    def where(self) -> str:
        return self.endpoint.hostport


class Transport:
    """Send requests directly or through the proxy ``proxies`` picks; thread-safe."""

    def __init__(
        self,
        proxies: ProxyConfig,
        *,
        timeout: float = 30.0,
        ca_file: str | None = None,
        proxy_ca_file: str | None = None,
        connect_timeout: float | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._proxies = proxies
        self._timeout = timeout
        connect_timeout = connect_timeout if connect_timeout is not None else min(timeout, 10.0)
        self._connect_timeout = connect_timeout
        self._max_body = max_body_bytes
        target_tls = _tls_context("ca_file", ca_file)
        proxy_tls = target_tls if proxy_ca_file is None else _tls_context("proxy_ca_file", proxy_ca_file)
        self._opener = Opener(target_tls, proxy_tls, connect_timeout)
        self._idle: dict[_PoolKey, list[_Connection]] = {}
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
        key: _PoolKey = (target.endpoint.scheme, target.endpoint.host, target.endpoint.port, proxy)
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
            raise ConnectionLost(f"{target.where} closed the connection at once") from exc

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

    def _take_idle(self, key: _PoolKey) -> _Connection | None:
        with self._lock:
            conns = self._idle.get(key)
            return conns.pop() if conns else None

    def _give_back(self, key: _PoolKey, conn: _Connection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < MAX_IDLE_PER_KEY:
                conns.append(conn)
                return
        conn.close()

    def _open(self, target: _Target, proxy: ProxyURL | None, read_timeout: float) -> _Connection:
        opened = self._opener.open(target.endpoint, proxy)
        opened.stream.settimeout(read_timeout)
        return _Connection(target.endpoint, opened)

    def _exchange(
        self,
        conn: _Connection,
        key: _PoolKey,
        target: _Target,
        proxy: ProxyURL | None,
        call: tuple[str, Mapping[str, str] | None, bytes | None, float],
    ) -> Response:
        method, headers, body, read_timeout = call
        where = target.where
        send_headers = dict(headers or {})
        path = target.path
        forwarded = proxy is not None and not proxy.is_socks and target.endpoint.scheme == "http"
        if proxy is not None and forwarded:
            path = target.url  # absolute form, as a forward proxy expects
            auth = basic_auth(proxy)
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
        except (
            http.client.RemoteDisconnected,
            BrokenPipeError,
            ConnectionResetError,
            ssl.SSLEOFError,  # how a TLS peer (an https:// proxy) closing an idle connection shows
        ) as exc:
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
        if proxy is not None and forwarded and response.status == 407:
            conn.close()
            have = "were refused" if "Proxy-Authorization" in send_headers else "are missing"
            raise ProxyAuthFailed(f"proxy {proxy.display} answered 407 to {method} (credentials {have})")
        answer = Response(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=data,
            tls=conn.tls,
        )
        if response.will_close:
            conn.close()
        else:
            self._give_back(key, conn)
        return answer


class _Connection(http.client.HTTPConnection):
    """An ``http.client`` connection over a stream :class:`~agent.connections.Opener` opened."""

    def __init__(self, endpoint: Endpoint, opened: Opened) -> None:
        super().__init__(endpoint.host, endpoint.port)
        self.default_port = 443 if endpoint.scheme == "https" else 80  # Host: omits the default port
        self.sock = cast(Any, opened.stream)  # a socket, an SSL socket or TLS in TLS: all duck-type alike
        self.tls = opened.tls

    def connect(self) -> None:
        """The stream is opened before; a closed connection is never reconnected, but replaced."""
        raise ConnectionResetError("connection already closed")


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
    return _Target(Endpoint(scheme, host, int(port)), path, url)


def _tls_context(setting: str, ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
        reason = exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"{setting} {ca_file} cannot be used as a CA bundle: {reason}") from exc
