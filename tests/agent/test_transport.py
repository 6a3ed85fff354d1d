"""The stdlib HTTP transport against in-process servers on 127.0.0.1 (no other network)."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.errors import (
    ConfigError,
    ConnectError,
    ConnectionLost,
    ProxyAuthFailed,
    ProxyError,
    ProxyRefused,
    ProxyUntrusted,
    RequestTimeout,
    ResponseTooLarge,
)
from agent.proxyconfig import ProxyConfig
from agent.transport import Transport
from tests import certs, servers

Handler = Callable[[socket.socket, "RawServer"], None]


class RawServer:
    """A loopback TCP server that runs ``handler`` on each connection and records what it saw."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        """Stop accepting connections."""
        self._stop.set()
        self.listener.close()


def read_request(conn: socket.socket, server: RawServer) -> bytes | None:
    """Read one request head and its Content-Length body; record the head; None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += conn.recv(65536)
    server.requests.append(head)
    return head


def answer(status: int = 200, body: bytes = b"ok", extra: bytes = b"") -> bytes:
    """Build an HTTP/1.1 response."""
    return (
        f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def keep_alive(conn: socket.socket, server: RawServer) -> None:
    """Answer every request on the connection with 200 'ok'."""
    while read_request(conn, server) is not None:
        conn.sendall(answer())


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    """Start RawServers and close them after the test."""
    started: list[RawServer] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler, tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def direct() -> Transport:
    """A transport with no proxy configured."""
    return Transport(ProxyConfig(), timeout=5.0)


def test_get_returns_status_headers_and_body(serve: Callable[..., RawServer]) -> None:
    """A direct GET returns the status, lower-cased headers and the exact body."""
    server = serve(keep_alive)
    with direct() as transport:
        response = transport.request("GET", f"http://127.0.0.1:{server.port}/a/b?x=1&y=%2F")
    assert response.status == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"ok"
    assert server.requests[0].startswith(b"GET /a/b?x=1&y=%2F HTTP/1.1\r\n")


def test_keep_alive_reuses_one_connection(serve: Callable[..., RawServer]) -> None:
    """Three requests to the same host share one TCP connection."""
    server = serve(keep_alive)
    with direct() as transport:
        for _ in range(3):
            assert transport.request("PUT", f"http://127.0.0.1:{server.port}/o", body=b"x" * 10).status == 200
    assert server.connections == 1
    assert len(server.requests) == 3


def test_error_statuses_are_returned_not_raised(serve: Callable[..., RawServer]) -> None:
    """A 503 answer is a Response, not an exception."""

    def unavailable(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        conn.sendall(answer(503, b"busy", b"Retry-After: 2\r\n"))

    server = serve(unavailable)
    with direct() as transport:
        response = transport.request("POST", f"http://127.0.0.1:{server.port}/v1/ingest/grants", body=b"{}")
    assert response.status == 503
    assert response.headers["retry-after"] == "2"


def test_stale_idle_connection_is_retried_once_on_a_new_one(serve: Callable[..., RawServer]) -> None:
    """When the server closed an idle keep-alive connection, the next request still succeeds."""

    def one_then_close(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        conn.sendall(answer())
        conn.shutdown(socket.SHUT_RDWR)

    server = serve(one_then_close)
    with direct() as transport:
        assert transport.request("GET", f"http://127.0.0.1:{server.port}/1").status == 200
        assert transport.request("GET", f"http://127.0.0.1:{server.port}/2").status == 200
    assert server.connections == 2


def test_connection_closed_without_answer_on_new_connection_raises(serve: Callable[..., RawServer]) -> None:
    """A fresh connection closed before any answer raises ConnectionLost, without looping."""

    def hang_up(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)

    server = serve(hang_up)
    with direct() as transport, pytest.raises(ConnectionLost):
        transport.request("GET", f"http://127.0.0.1:{server.port}/")
    assert server.connections == 1


def test_body_over_the_bound_raises(serve: Callable[..., RawServer]) -> None:
    """A body larger than max_body_bytes raises ResponseTooLarge instead of filling memory."""

    def big(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        conn.sendall(answer(200, b"y" * 5000))

    server = serve(big)
    transport = Transport(ProxyConfig(), timeout=5.0, max_body_bytes=4096)
    with transport, pytest.raises(ResponseTooLarge):
        transport.request("GET", f"http://127.0.0.1:{server.port}/")


def test_read_timeout_raises_request_timeout(serve: Callable[..., RawServer]) -> None:
    """A server that never answers makes the request fail with RequestTimeout after the read timeout."""
    release = threading.Event()

    def silent(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        release.wait(5)

    server = serve(silent)
    with direct() as transport, pytest.raises(RequestTimeout):
        transport.request("GET", f"http://127.0.0.1:{server.port}/", timeout=0.3)
    release.set()


def test_refused_connection_raises_connect_error() -> None:
    """Nothing listening on the port gives ConnectError naming the target."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with direct() as transport, pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        transport.request("GET", f"http://127.0.0.1:{port}/")


def test_unsupported_url_scheme_raises() -> None:
    """Only http and https URLs are accepted."""
    with direct() as transport, pytest.raises(ConnectError):
        transport.request("GET", "ftp://example.com/")


def test_http_through_proxy_uses_absolute_form_and_basic_auth(serve: Callable[..., RawServer]) -> None:
    """An http:// request through a proxy sends the absolute URL and Proxy-Authorization to the proxy."""
    proxy = serve(keep_alive)
    config = ProxyConfig(http_proxy=f"http://agent:p%40ss@127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport:
        response = transport.request("GET", "http://bucket.example:8080/b/o?sig=1")
    assert response.status == 200
    head = proxy.requests[0].decode()
    assert head.startswith("GET http://bucket.example:8080/b/o?sig=1 HTTP/1.1\r\n")
    assert "Host: bucket.example:8080" in head
    expected = base64.b64encode(b"agent:p@ss").decode()
    assert f"Proxy-Authorization: Basic {expected}" in head


def test_https_through_proxy_opens_a_connect_tunnel(serve: Callable[..., RawServer]) -> None:
    """An https:// request through a proxy sends CONNECT host:port with credentials; a 407 is a ProxyError."""

    def refuse(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")

    proxy = serve(refuse)
    config = ProxyConfig(https_proxy=f"http://agent:secret@127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport, pytest.raises(ProxyError) as caught:
        transport.request("PUT", "https://storage.example.com/b/o", body=b"data")
    assert "407" in str(caught.value)
    assert "secret" not in str(caught.value)
    head = proxy.requests[0].decode()
    assert head.startswith("CONNECT storage.example.com:443 HTTP/1.")
    assert "Proxy-Authorization: Basic " + base64.b64encode(b"agent:secret").decode() in head


def _socks_server(reply: int, *, auth: tuple[bytes, bytes] | None = None) -> Handler:
    """A SOCKS5 server that records the CONNECT address and answers ``reply``, then speaks HTTP."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        greeting = conn.recv(2)
        methods = conn.recv(greeting[1])
        if auth is None:
            conn.sendall(b"\x05\x00")
        elif 2 not in methods:
            conn.sendall(b"\x05\xff")
            return
        else:
            conn.sendall(b"\x05\x02")
            ver_ulen = conn.recv(2)
            user = conn.recv(ver_ulen[1])
            password = conn.recv(conn.recv(1)[0])
            conn.sendall(b"\x01\x00" if (user, password) == auth else b"\x01\x01")
            if (user, password) != auth:
                return
        head = conn.recv(4)
        if head[3] == 3:
            address = conn.recv(conn.recv(1)[0])
        else:
            address = socket.inet_ntop(
                socket.AF_INET if head[3] == 1 else socket.AF_INET6, conn.recv(4 if head[3] == 1 else 16)
            ).encode()
        port = int.from_bytes(conn.recv(2), "big")
        server.requests.append(b"SOCKS %s:%d" % (address, port))
        conn.sendall(bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]))
        if reply == 0:
            keep_alive(conn, server)

    return handle


@pytest.mark.parametrize("scheme", ["socks5h", "socks5"])
def test_socks5_resolves_locally_and_socks5h_at_the_proxy(
    serve: Callable[..., RawServer], scheme: str
) -> None:
    """socks5:// hands the proxy an address resolved here; socks5h:// hands it the name; both carry HTTP."""
    name = servers.loopback_hostname()  # resolves here; loopback literals and localhost are never proxied
    sent = name if scheme == "socks5h" else socket.gethostbyname(name)
    proxy = serve(_socks_server(0, auth=(b"agent", b"p@ss")))
    config = ProxyConfig(http_proxy=f"{scheme}://agent:p%40ss@127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport:
        response = transport.request("GET", f"http://{name}:8080/b/o")
    assert response.status == 200
    assert proxy.requests[0] == f"SOCKS {sent}:8080".encode()
    assert proxy.requests[1].startswith(b"GET /b/o HTTP/1.1\r\n")  # origin form: SOCKS is not HTTP
    assert b"Proxy-Authorization" not in proxy.requests[1]


def test_socks5_wrong_password_is_an_auth_failure_without_the_password(
    serve: Callable[..., RawServer],
) -> None:
    """A SOCKS5 server refusing the password raises ProxyAuthFailed that does not show it."""
    proxy = serve(_socks_server(0, auth=(b"agent", b"right")))
    config = ProxyConfig(https_proxy=f"socks5h://agent:Wr0ngPass@127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport, pytest.raises(ProxyAuthFailed) as caught:
        transport.request("GET", "https://storage.example.com/")
    assert "refused the SOCKS5 user name or password" in str(caught.value)
    assert "Wr0ngPass" not in str(caught.value)


def test_socks5_without_credentials_against_an_authenticating_server(
    serve: Callable[..., RawServer],
) -> None:
    """A SOCKS5 server that wants a password, asked without one, says to put it in the URL."""
    proxy = serve(_socks_server(0, auth=(b"agent", b"right")))
    with (
        Transport(ProxyConfig(https_proxy=f"socks5h://127.0.0.1:{proxy.port}"), timeout=5.0) as transport,
        pytest.raises(ProxyAuthFailed, match="wants credentials"),
    ):
        transport.request("GET", "https://storage.example.com/")


def test_socks5_refusal_names_the_reply(serve: Callable[..., RawServer]) -> None:
    """A SOCKS5 CONNECT refused by the server's rules raises ProxyRefused with the RFC 1928 reason."""
    proxy = serve(_socks_server(2))
    config = ProxyConfig(https_proxy=f"socks5h://127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport, pytest.raises(ProxyRefused) as caught:
        transport.request("GET", "https://storage.example.com/")
    assert "connection not allowed by ruleset" in str(caught.value)
    assert "storage.example.com:443" in str(caught.value)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, written to files."""
    return certs.write_self_signed_cert(tmp_path_factory.mktemp("tls"), ["127.0.0.1"])


def _server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


def test_https_verifies_against_the_given_ca(
    serve: Callable[..., RawServer], tls_files: tuple[Path, Path]
) -> None:
    """With the server's CA in ca_file, an https request succeeds and reuses its connection."""
    server = serve(keep_alive, _server_tls(tls_files))
    with Transport(ProxyConfig(), timeout=5.0, ca_file=str(tls_files[0])) as transport:
        assert transport.request("GET", f"https://127.0.0.1:{server.port}/").body == b"ok"
        assert transport.request("GET", f"https://127.0.0.1:{server.port}/").status == 200
    assert server.connections == 1


def test_https_refuses_an_unknown_certificate(
    serve: Callable[..., RawServer], tls_files: tuple[Path, Path]
) -> None:
    """TLS verification is on: a self-signed certificate not in the trust store is a ConnectError."""
    server = serve(keep_alive, _server_tls(tls_files))
    with direct() as transport, pytest.raises(ConnectError, match="TLS"):
        transport.request("GET", f"https://127.0.0.1:{server.port}/")


@pytest.mark.parametrize("kind", ["absent", "not a certificate", "a directory"])
def test_unusable_ca_file_is_a_config_error_naming_it(tmp_path: Path, kind: str) -> None:
    """A ca_file that is absent, holds no certificate or is a directory is a ConfigError, not a traceback."""
    path = tmp_path / "ca.pem"
    if kind == "not a certificate":
        path.write_text("hello\n")
    elif kind == "a directory":
        path.mkdir()
    with pytest.raises(ConfigError, match="ca_file"):
        Transport(ProxyConfig(), ca_file=str(path))


def _tls_proxy(tls_files: tuple[Path, Path]) -> Handler:
    """An https:// proxy: TLS on its socket, CONNECT answered 200 then bytes relayed to the target port."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        head = read_request(conn, server)
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0].decode()
        if not line.startswith("CONNECT "):
            conn.sendall(answer(200, b"forwarded"))
            keep_alive(conn, server)
            return
        port = int(line.split()[1].rsplit(":", 1)[1])
        upstream = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _relay(conn, upstream)

    return handle


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
    pump(client, upstream)


@pytest.fixture(scope="module")
def named_tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for a non-loopback-literal name of 127.0.0.1 (proxied, unlike 127.0.0.1)."""
    return certs.write_self_signed_cert(tmp_path_factory.mktemp("tls"), [servers.loopback_hostname()])


def test_https_proxy_carries_tls_in_tls_and_absolute_form(
    serve: Callable[..., RawServer], tls_files: tuple[Path, Path], named_tls_files: tuple[Path, Path]
) -> None:
    """Through an https:// proxy, https targets get TLS inside the proxy's TLS; http ones absolute form."""
    name = servers.loopback_hostname()
    target = serve(keep_alive, _server_tls(named_tls_files))
    proxy = serve(_tls_proxy(tls_files), _server_tls(tls_files))
    url = f"https://127.0.0.1:{proxy.port}"
    config = ProxyConfig(http_proxy=url, https_proxy=url)
    with Transport(
        config, timeout=5.0, ca_file=str(named_tls_files[0]), proxy_ca_file=str(tls_files[0])
    ) as transport:
        secure = transport.request("PUT", f"https://{name}:{target.port}/b/o", body=b"x" * 100_000)
        again = transport.request("GET", f"https://{name}:{target.port}/b/o2")
        plain = transport.request("GET", "http://bucket.example/b/o")
    assert (secure.status, secure.body, again.status) == (200, b"ok", 200)
    assert any(line.startswith(f"proxy 127.0.0.1:{proxy.port}: TLSv1.") for line in secure.tls)
    assert any(line.startswith(f"target {name}:{target.port}: TLSv1.") for line in secure.tls)
    assert proxy.connections == 2  # one tunnel reused for both https requests, one for the http one
    assert target.requests[0].startswith(b"PUT /b/o HTTP/1.1")
    assert plain.body == b"forwarded"
    assert proxy.requests[-1].startswith(b"GET http://bucket.example/b/o HTTP/1.1")


def test_https_proxy_with_an_unknown_certificate_is_untrusted(
    serve: Callable[..., RawServer], tls_files: tuple[Path, Path]
) -> None:
    """An https:// proxy whose certificate no configured CA signed raises ProxyUntrusted, naming the proxy."""
    proxy = serve(_tls_proxy(tls_files), _server_tls(tls_files))
    config = ProxyConfig(https_proxy=f"https://agent:s3cret@127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport, pytest.raises(ProxyUntrusted) as caught:
        transport.request("GET", "https://storage.example.com/")
    assert f"TLS to proxy https://agent:***@127.0.0.1:{proxy.port} failed" in str(caught.value)
    assert "not trusted" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_proxy_ca_file_is_used_for_the_proxy_only(
    serve: Callable[..., RawServer], tls_files: tuple[Path, Path], named_tls_files: tuple[Path, Path]
) -> None:
    """proxy_ca_file verifies the proxy; the target is still checked against ca_file (here: system CAs)."""
    name = servers.loopback_hostname()
    target = serve(keep_alive, _server_tls(named_tls_files))
    proxy = serve(_tls_proxy(tls_files), _server_tls(tls_files))
    config = ProxyConfig(https_proxy=f"https://127.0.0.1:{proxy.port}")
    with (
        Transport(config, timeout=5.0, proxy_ca_file=str(tls_files[0])) as transport,
        pytest.raises(ConnectError, match=f"TLS handshake with {name}:{target.port} failed"),
    ):
        transport.request("GET", f"https://{name}:{target.port}/")
    assert proxy.requests[0].startswith(f"CONNECT {name}:{target.port} HTTP/1.1".encode())


def test_407_to_an_absolute_form_request_is_a_proxy_auth_failure(serve: Callable[..., RawServer]) -> None:
    """A forward proxy answering 407 to an http:// request raises ProxyAuthFailed instead of passing it on."""

    def want_auth(conn: socket.socket, server: RawServer) -> None:
        while read_request(conn, server) is not None:
            conn.sendall(answer(407, b"", b"Proxy-Authenticate: Basic realm=x\r\n"))

    proxy = serve(want_auth)
    config = ProxyConfig(http_proxy=f"http://agent:Wr0ngPass@127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport, pytest.raises(ProxyAuthFailed) as caught:
        transport.request("PUT", "http://bucket.example/b/o", body=b"data")
    assert f"proxy http://agent:***@127.0.0.1:{proxy.port} answered 407 to PUT" in str(caught.value)
    assert "Wr0ngPass" not in str(caught.value)


def test_connect_to_an_ipv6_literal_is_bracketed(serve: Callable[..., RawServer]) -> None:
    """CONNECT to an IPv6 literal names it as [addr]:port, which Python 3.11's own tunnel code did not."""

    def refuse(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    proxy = serve(refuse)
    config = ProxyConfig(https_proxy=f"http://127.0.0.1:{proxy.port}")
    with Transport(config, timeout=5.0) as transport, pytest.raises(ProxyRefused, match="403 Forbidden"):
        transport.request("GET", "https://[2001:db8::1]:8443/b/o")
    assert proxy.requests[0] == b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443"
