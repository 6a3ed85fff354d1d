"""A small real HTTP front that forwards to an upstream and injects faults, for integration tests.

It listens on a real socket (a thread in the test process) and forwards each request to the
upstream with ``http.client``, rewriting ``Host`` to the upstream's (fake-gcs-server checks it).
A *plan* decides, per request, what goes wrong:

- ``status:<code>``       answer with that status without forwarding (503, 429 + Retry-After, 403 ...)
- ``expired``             answer 400 ``ExpiredToken`` as real GCS does for a signed URL past its expiry
                          (fake-gcs-server never checks expiry), without forwarding
- ``reset``               close the connection without an answer, without forwarding
- ``timeout``             hold the connection for ``hold_seconds``, then close it, without forwarding
- ``after:<code>``        forward (the upstream stores it), then answer ``<code>`` (412 = "already there")
- ``after:reset``         forward, then drop the answer (the client never learns it was stored)
- ``slow:<seconds>``      forward, then wait before answering (a slow bucket; widens crash windows)
- ``None``                forward faithfully

:func:`random_plan` mixes them in with a seeded RNG. ``down()``/``up()`` make the front refuse every
request with a reset, like an unreachable service.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: The body real GCS sends for a V4 signed URL used after its X-Goog-Expires.
EXPIRED_TOKEN = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
    b"<Message>The provided token has expired.</Message>"
    b"<Details>Request signature expired at: 2026-11-28T08:00:00+00:00</Details></Error>"
)

Plan = Callable[[str, str], str | None]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection", "host"}


def random_plan(
    seed: int, rate: float, kinds: tuple[str, ...], methods: tuple[str, ...] = ("PUT", "POST")
) -> Plan:
    """Return a plan that injects a fault into a ``rate`` share of requests with those methods.

    The faults cycle through ``kinds`` in order, so every kind fires once enough requests are made.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fault schedule, not crypto
    lock = threading.Lock()
    fired = [0]

    def plan(method: str, _path: str) -> str | None:
        if method not in methods:
            return None
        with lock:
            if rng.random() >= rate:
                return None
            fired[0] += 1
            return kinds[(fired[0] - 1) % len(kinds)]

    return plan


class FaultProxy:
    """The front: ``url`` is where clients connect; ``counts`` says which faults fired."""

    def __init__(self, upstream: str, plan: Plan | None = None, hold_seconds: float = 3.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan: Plan = plan or (lambda _m, _p: None)
        self.hold_seconds = hold_seconds
        self.counts: Counter[str] = Counter()
        self._down = False
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return

            def _any(self) -> None:
                front.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815 - stdlib naming

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        """Refuse every request (connection reset) until :meth:`up`."""
        self._down = True

    def up(self) -> None:
        """Forward again."""
        self._down = False

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        sock = handler.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        sock.close()

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Read the request, apply the plan, forward or fail."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if self._down:
            self._count("down")
            self._reset(handler)
            return
        fault = self.plan(handler.command, handler.path)
        if fault is not None:
            self._count(fault)
        if fault == "reset":
            self._reset(handler)
            return
        if fault == "timeout":
            time.sleep(self.hold_seconds)
            self._reset(handler)
            return
        if fault == "expired" or (fault is not None and fault.startswith("status:")):
            code = 400 if fault == "expired" else int(fault.split(":", 1)[1])
            extra = {"Retry-After": "1"} if code == 429 else {}
            error = (
                EXPIRED_TOKEN if fault == "expired"
                else b"<Error><Code>AccessDenied</Code></Error>" if code == 403
                else b"injected"
            )  # fmt: skip
            self._answer(handler, code, error, extra)
            return
        status, headers, answer = self._forward(handler, body)
        if fault is not None and fault.startswith("slow:"):
            time.sleep(float(fault.split(":", 1)[1]))
        if fault == "after:reset":
            self._reset(handler)
            return
        if fault is not None and fault.startswith("after:"):
            self._answer(handler, int(fault.split(":", 1)[1]), b"", {})
            return
        self._answer(handler, status, answer, headers)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(handler.command, handler.path, body=body if body else None, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            kept = {
                k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}
            }
        except OSError:
            return 502, {}, b"upstream unreachable"
        else:
            return response.status, kept, answer
        finally:
            conn.close()
