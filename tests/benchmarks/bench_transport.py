"""Benchmark the agent's transport and NO_PROXY matching; prints figures with a baseline from the same run.

    .venv/bin/python -m tests.benchmarks.bench_transport [--requests 2000] [--body-kib 64]

- NO_PROXY decision cost: ``ProxyConfig.decide`` over Go's test hosts with Go's test NO_PROXY list.
- PUT throughput to a loopback HTTP/1.1 server: ``agent.transport.Transport`` (keep-alive reuse)
  against the baseline ``urllib.request`` (a new connection per request, as urllib does), same bodies.
- PUTs through real proxies (``--proxy-requests``, default 500): tinyproxy as an ``http://`` proxy
  (urllib through it as the baseline), and stunnel in front of it as an ``https://`` proxy, to an
  http:// target (absolute form inside TLS to the proxy) and to an https:// target (TLS in TLS).
"""

from __future__ import annotations

import argparse
import http.server
import ssl
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from agent.proxyconfig import ProxyConfig
from agent.transport import Transport
from tests import certs, servers

GO_NO_PROXY = (
    "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, "
    "10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64"
)
GO_HOSTS = [
    "localhost",
    "127.0.0.1",
    "[::2]",
    "192.168.1.2",
    "10.0.0.2",
    "[2001:db8::52:0:1]",
    "[2002:db8:a::123]",
    "barbaz.net",
    "www.barbaz.net",
    "foobar.com",
    "www.foobar.com",
    "nested.wildcard.io",
    "awildcard.io",
]


class _Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Quiet."""


def bench_decide(rounds: int) -> float:
    """Return microseconds per ``decide`` call."""
    config = ProxyConfig(https_proxy="http://proxy:3128", no_proxy=GO_NO_PROXY)
    urls = [f"https://{host}:443/bucket/object" for host in GO_HOSTS]
    started = time.perf_counter()
    for _ in range(rounds):
        for url in urls:
            config.decide(url)
    return (time.perf_counter() - started) / (rounds * len(urls)) * 1e6


def bench_puts(url: str, count: int, body: bytes) -> tuple[float, float]:
    """Return seconds for ``count`` PUTs with the Transport and with urllib (baseline)."""
    with Transport(ProxyConfig(), timeout=10) as transport:
        started = time.perf_counter()
        for _ in range(count):
            assert transport.request("PUT", url, body=body).status == 200
        ours = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(count):
        request = urllib.request.Request(url, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    baseline = time.perf_counter() - started
    return ours, baseline


def _timed_puts(transport: Transport, url: str, count: int, body: bytes) -> float:
    started = time.perf_counter()
    for _ in range(count):
        assert transport.request("PUT", url, body=body).status == 200
    return time.perf_counter() - started


def _urllib_via(proxy: str, url: str, count: int, body: bytes) -> float:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    started = time.perf_counter()
    for _ in range(count):
        with opener.open(urllib.request.Request(url, data=body, method="PUT"), timeout=10) as response:
            assert response.status == 200
    return time.perf_counter() - started


def bench_proxies(count: int, body: bytes) -> None:
    """PUTs through tinyproxy (http://) and stunnel before it (https://), to http and https targets."""
    host = servers.loopback_hostname()  # loopback literals are never proxied (Go's rule)
    folder = Path(tempfile.mkdtemp(prefix="nodelogs-bench-tls-"))
    ca, cert, key = certs.write_ca_signed_cert(folder, [host])
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    secure.socket = tls.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    http_url = f"http://{host}:{plain.server_address[1]}/bucket/object"
    https_url = f"https://{host}:{secure.server_address[1]}/bucket/object"
    mib = count * len(body) / 2**20
    with (
        servers.running(servers.start_tinyproxy_open) as tiny,
        servers.running(servers.start_stunnel, tiny.port, cert, key) as stunnel,
    ):
        http_proxy = f"http://{host}:{tiny.port}"
        https_proxy = f"https://{host}:{stunnel.port}"
        runs = [
            ("http:// proxy (tinyproxy), http target", http_proxy, http_url),
            ("http:// proxy (tinyproxy), https target (CONNECT)", http_proxy, https_url),
            ("https:// proxy (stunnel+tinyproxy), http target", https_proxy, http_url),
            ("https:// proxy (stunnel+tinyproxy), https target (TLS in TLS)", https_proxy, https_url),
        ]
        print(f"{count} PUTs of {len(body) // 1024} KiB through real proxies on loopback:")
        for label, proxy, url in runs:
            config = ProxyConfig(http_proxy=proxy, https_proxy=proxy)
            with Transport(config, timeout=10, ca_file=str(ca)) as transport:
                took = _timed_puts(transport, url, count, body)
            print(f"  {label}: {count / took:.0f} req/s, {mib / took:.1f} MiB/s")
        took = _urllib_via(http_proxy, http_url, count, body)
        print(
            f"  urllib baseline, http:// proxy, http target: {count / took:.0f} req/s, {mib / took:.1f} MiB/s"
        )
    plain.shutdown()
    secure.shutdown()


def main() -> None:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--proxy-requests", type=int, default=500)
    parser.add_argument("--body-kib", type=int, default=64)
    args = parser.parse_args()
    print(f"NO_PROXY decide: {bench_decide(2000):.2f} us/call ({len(GO_HOSTS)} Go test hosts, 11-entry list)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/bucket/object"
    body = b"x" * (args.body_kib * 1024)
    ours, baseline = bench_puts(url, args.requests, body)
    mib = args.requests * len(body) / 2**20
    print(f"{args.requests} PUTs of {args.body_kib} KiB to loopback HTTP/1.1:")
    print(f"  Transport (keep-alive): {ours:.2f} s, {args.requests / ours:.0f} req/s, {mib / ours:.1f} MiB/s")
    rate, speed = args.requests / baseline, mib / baseline
    print(f"  urllib baseline:        {baseline:.2f} s, {rate:.0f} req/s, {speed:.1f} MiB/s")
    print(f"  ratio Transport/urllib throughput: {baseline / ours:.2f}x")
    server.shutdown()
    bench_proxies(args.proxy_requests, body)


if __name__ == "__main__":
    main()
