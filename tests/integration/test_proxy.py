"""The agent's transport through a real tinyproxy: proxied requests show in its log, bypassed ones do not."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.chunking import source_id
from agent.errors import ProxyError
from agent.proxyconfig import ProxyConfig
from agent.transport import Transport
from keysvc.devtools import emulator
from tests import certs, servers
from tests.agent import stack

pytestmark = pytest.mark.integration


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET/PUT with 200 and records the request path."""

    protocol_version = "HTTP/1.1"
    seen: list[str]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(self.path)
        body = b"stored"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer  # noqa: N815 - http.server's naming
    do_PUT = _answer  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Keep test output quiet."""


@dataclass
class Bucket:
    """A loopback HTTP(S) server reached by a host name that is not a loopback literal."""

    host: str
    port: int
    seen: list[str]
    ca_file: Path | None = None

    def url(self, path: str) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"


def _serve(tls: ssl.SSLContext | None) -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_bucket() -> Iterator[Bucket]:
    """A plain HTTP server on 127.0.0.1 addressed by a non-loopback-literal name."""
    host = servers.loopback_hostname()
    for port, seen in _serve(None):
        yield Bucket(host, port, seen)


@pytest.fixture
def https_bucket(tmp_path: Path) -> Iterator[Bucket]:
    """An HTTPS server with a self-signed certificate for the loopback host name."""
    host = servers.loopback_hostname()
    cert, key = certs.write_self_signed_cert(tmp_path / "tls", [host])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for port, seen in _serve(context):
        yield Bucket(host, port, seen, ca_file=cert)


def _proxy_log(proxy: servers.Server) -> str:
    return Path(proxy.extra["log"]).read_text(encoding="utf-8", errors="replace")


def test_http_goes_through_the_proxy_unless_no_proxy_matches(
    tinyproxy: servers.Server, http_bucket: Bucket
) -> None:
    """An http:// PUT shows in the proxy log; with the host in NO_PROXY it reaches the server, not the log."""
    proxied_path, direct_path = f"/b/{uuid.uuid4().hex}", f"/b/{uuid.uuid4().hex}"
    env = {"HTTP_PROXY": tinyproxy.url, "NO_PROXY": "10.0.0.0/8, .elsewhere.test"}
    with Transport(ProxyConfig.from_env(env), timeout=10) as transport:
        assert transport.request("PUT", http_bucket.url(proxied_path), body=b"chunk").status == 200
    env["no_proxy"] = env.pop("NO_PROXY") + f", {http_bucket.host}"
    with Transport(ProxyConfig.from_env(env), timeout=10) as transport:
        assert transport.request("PUT", http_bucket.url(direct_path), body=b"chunk").status == 200
    log = _proxy_log(tinyproxy)
    assert f"PUT http://{http_bucket.host}:{http_bucket.port}{proxied_path}" in log
    assert direct_path not in log
    assert http_bucket.seen == [proxied_path, direct_path]


def test_https_tunnels_through_an_authenticating_proxy(
    tinyproxy_open: servers.Server, https_bucket: Bucket
) -> None:
    """An https:// request opens a CONNECT tunnel with Basic auth; the path stays hidden inside TLS."""
    path = f"/b/{uuid.uuid4().hex}?X-Goog-Signature=abc"
    proxy_url = tinyproxy_open.url.replace("http://", "http://agent:pr0xy@")
    config = ProxyConfig.from_env({"https_proxy": proxy_url})
    decided = config.decide(https_bucket.url(path)).proxy
    assert decided is not None
    assert (decided.scheme, decided.hostport, decided.username, decided.password) == (
        "http",
        f"127.0.0.1:{tinyproxy_open.port}",
        "agent",
        "pr0xy",
    )
    with Transport(config, timeout=10, ca_file=str(https_bucket.ca_file)) as transport:
        response = transport.request("PUT", https_bucket.url(path), body=b"\x1f\x8b gzip bytes")
    assert response.status == 200
    assert response.body == b"stored"
    log = _proxy_log(tinyproxy_open)
    assert f"CONNECT {https_bucket.host}:{https_bucket.port}" in log
    assert path.split("?", maxsplit=1)[0] not in log
    assert "pr0xy" not in log
    assert https_bucket.seen == [path]


def test_https_no_proxy_wildcard_bypasses_the_proxy(
    tinyproxy_open: servers.Server, https_bucket: Bucket
) -> None:
    """With NO_PROXY='*' an https request goes direct and leaves no CONNECT in the proxy log."""
    path = f"/b/{uuid.uuid4().hex}"
    before = _proxy_log(tinyproxy_open).count(f"CONNECT {https_bucket.host}:{https_bucket.port}")
    config = ProxyConfig.from_env({"HTTPS_PROXY": tinyproxy_open.url, "NO_PROXY": "*"})
    with Transport(config, timeout=10, ca_file=str(https_bucket.ca_file)) as transport:
        assert transport.request("GET", https_bucket.url(path)).status == 200
    after = _proxy_log(tinyproxy_open).count(f"CONNECT {https_bucket.host}:{https_bucket.port}")
    assert after == before
    assert https_bucket.seen == [path]


def test_wrong_proxy_password_is_a_proxy_error(tinyproxy_open: servers.Server, https_bucket: Bucket) -> None:
    """A proxy refusing the credentials gives ProxyError with the status and without the password."""
    proxy_url = tinyproxy_open.url.replace("http://", "http://agent:WRONGpass@")
    config = ProxyConfig.from_env({"HTTPS_PROXY": proxy_url})
    with (
        Transport(config, timeout=10, ca_file=str(https_bucket.ca_file)) as transport,
        pytest.raises(ProxyError) as caught,
    ):
        transport.request("GET", https_bucket.url("/"))
    assert "401" in str(caught.value) or "407" in str(caught.value)
    assert "WRONGpass" not in str(caught.value)
    assert https_bucket.seen == []


def test_agent_ships_through_the_proxy_and_reaches_keysvc_directly(
    tmp_path: Path, tinyproxy: servers.Server
) -> None:
    """The real agent: bucket PUTs go through tinyproxy, keysvc (NO_PROXY host:port) direct; bytes exact."""
    host = servers.loopback_hostname()
    gcs_port = servers.free_port()
    gcs_url = f"http://{host}:{gcs_port}"
    gcs = subprocess.Popen(
        [
            str(servers.fake_gcs_binary()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(gcs_port),
            "-public-host",
            f"{host}:{gcs_port}",
            "-backend",
            "memory",
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    keysvc = None
    try:
        servers.wait_until(lambda: servers.http_ok(f"{gcs_url}/storage/v1/b"), what="fake-gcs-server")
        emulator.create_buckets(gcs_url, [stack.BUCKET])
        keysvc = stack.Keysvc(tmp_path / "keysvc", gcs_url).prepare().start()
        source = tmp_path / "boot.log"
        env = {
            "NODELOGS_ENDPOINT": f"http://{host}:{keysvc.port}",
            "NODELOGS_BUCKET_URL": gcs_url,
            "HTTP_PROXY": tinyproxy.url,
            "no_proxy": f"{host}:{keysvc.port}",
        }
        node = stack.Node(
            tmp_path / "node", keysvc, "proxied-node", (str(source),), extra_env=env
        ).provision()
        toml = "chunk_bytes = 16384\nchunk_seconds = 0.3\npartial_line_seconds = 0.5\n"
        (node.root / "agent.toml").write_text(toml)

        check = subprocess.run(
            [str(stack.BIN / "nodelogs-agent"), "check"],
            env=node.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"direct (no_proxy entry '{host}:{keysvc.port}' matched" in check.stdout
        assert f"via HTTP proxy {tinyproxy.url} (HTTP_PROXY applies to http:// URLs" in check.stdout
        assert node.key not in check.stdout + check.stderr

        data = (
            b"".join(b"cloud-init[%d]: proxied line %d\n" % (i, i) for i in range(3000)) + b"tail, no newline"
        )
        source.write_bytes(data)
        node.start(toml)
        servers.wait_until(
            lambda: stack.landed(gcs_url, node.name, source, 1, data),
            timeout=60,
            what="the log in the bucket",
        )
        assert node.terminate() == 0
        assert stack.logs_get(keysvc, node.name, tmp_path / "out")[source_id(str(source))][1] == data
    finally:
        if keysvc is not None:
            keysvc.stop()
        gcs.terminate()
        gcs.wait(10)
    log = _proxy_log(tinyproxy)
    assert f"PUT {gcs_url}/{stack.BUCKET}/{stack.PREFIX}/{stack.CLUSTER}/proxied-node/" in log
    assert f"{host}:{keysvc.port}" not in log
