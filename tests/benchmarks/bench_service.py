"""Benchmark keysvc's HTTP service: a real `keysvc serve` process, driven over loopback.

Run:  .venv/bin/python -m tests.benchmarks.bench_service [--clients 200] [--burst 10000] [--grants 6000]

Measured in one run:
- AddNodes/s with ``--clients`` concurrent provisioner connections;
- upload grants/s (one signed URL each) with ``--clients`` concurrent agents, each with its own key,
  with p50 and p99 latency;
- a burst of ``--burst`` AddNodes that must finish with zero errors, and its duration;
- the baseline: this machine's raw RSA-2048 PKCS#1 v1.5 SHA-256 signing rate (one core, the
  ``cryptography`` library), which every V4 URL costs; grants/s is reported as a ratio of it.

The client is raw asyncio: one keep-alive HTTP/1.1 connection per concurrent client, requests
written as bytes and answers read by Content-Length, so 200 requests are really in flight at once
and the client costs a fraction of what the server does (httpx.AsyncClient was measured to need a
whole core for ~300 requests/s here, which would have made it the bottleneck). Client and server
CPU use are reported side by side (both from /proc) so the reader can see which side was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keysvc.devtools import demo, emulator

SUFFIX = "var-log-cloud-init-output.log-1f2e3d4c/g{gen:06d}/0000000000000000-0000000000001000.gz"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Phase:
    """The outcome of one timed phase."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds

    def quantile(self, q: float) -> float:
        """A latency quantile in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        """A one-line summary."""
        return (
            f"{self.name:<28} {self.requests:>6} requests  {self.errors} errors  {self.seconds:6.2f} s  "
            f"{self.rate:8.1f}/s  p50 {self.quantile(0.5):6.1f} ms  p99 {self.quantile(0.99):6.1f} ms  "
            f"CPU: server {self.server_cpu / self.seconds:4.0%} client {self.client_cpu / self.seconds:4.0%}"
        )


async def run_phase(
    name: str,
    total: int,
    pool: list[Connection],
    server_pid: int,
    call: Callable[[int, Connection], Awaitable[bool]],
) -> Phase:
    """Run ``total`` calls with one in flight on each connection of ``pool`` at once."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker(conn: Connection) -> None:
        nonlocal errors
        for index in counter:
            started = time.perf_counter()
            ok = await call(index, conn)
            latencies.append(time.perf_counter() - started)
            errors += not ok

    server_before, client_before = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in pool))
    seconds = time.perf_counter() - started
    return Phase(
        name, total, errors, seconds, latencies,
        cpu_seconds(server_pid) - server_before, time.process_time() - client_before,
    )  # fmt: skip


def rsa_signing_rate(seconds: float = 2.0) -> float:
    """Raw RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on one core."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = b"GOOG4-RSA-SHA256\n20261128T080000Z\n20261128/auto/storage/goog4_request\n" + b"0" * 64
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        count += 50
    return count / (time.perf_counter() - started)


class Connection:
    """One keep-alive HTTP/1.1 connection that sends JSON and reads the answer by Content-Length."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: dict[str, Any], token: str) -> tuple[int, bytes]:
        """POST ``body`` as JSON and return ``(status, body)``; reconnects if the server closed."""
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        payload = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            if name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                self.streams = None
        answer = await reader.readexactly(length)
        return status, answer


class Bench:
    """Drives one keysvc server; each concurrent client owns one connection."""

    def __init__(self, setup: demo.LocalSetup, clients: int) -> None:
        self.setup = setup
        self.pool = [Connection(setup.port) for _ in range(clients)]

    async def add_node(self, index: int, conn: Connection) -> dict[str, Any] | None:
        """One AddNode; returns the key and its node, or None on an error."""
        body = {
            "cluster": f"bench-{index % 50}",
            "node": f"node-{uuid.uuid4().hex[:12]}",
            "instance": f"i-{uuid.uuid4().hex[:17]}",
            "region": "local",
            "operation_id": uuid.uuid4().hex,
            "started_at": time.time(),
        }
        status, raw = await conn.post("/v1/nodes", body, self.setup.provisioner_token)
        if status != 201:
            return None
        answer: dict[str, Any] = json.loads(raw)
        return {**answer, "cluster": body["cluster"], "node": body["node"]}

    async def grant(self, key: dict[str, Any], index: int, conn: Connection) -> bool:
        """One grant of one URL; True when it succeeded."""
        body = {
            "cluster": key["cluster"], "node": key["node"], "region": "local",
            "objects": [{"name": SUFFIX.format(gen=index % 999_999)}],
        }  # fmt: skip
        status, raw = await conn.post("/v1/ingest/grants", body, key["key"])
        return status == 200 and len(json.loads(raw)["grants"]) == 1


async def main_async(args: argparse.Namespace) -> None:
    """Run every phase and print the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-bench-"))
    setup = demo.write_local_setup(
        workdir / "state", port=emulator.free_port(), gcs_endpoint="http://127.0.0.1:4443",
        regions={"local": "nodelogs-local"}, now=time.time(),
    )  # fmt: skip
    with (workdir / "keysvc.log").open("wb") as log:
        server = demo.start_serve(setup, log, ["--auth-burst", "1000000"])
    try:
        bench = Bench(setup, args.clients)
        pool, pid = bench.pool, server.pid
        adder = lambda i, c: _ok(bench.add_node(i, c))  # noqa: E731 - a local one-liner
        await run_phase("warm-up", 400, pool[:50], pid, adder)
        add = await run_phase(f"AddNode x{len(pool)} clients", args.addnodes, pool, pid, adder)
        keys = [k for k in await asyncio.gather(*(bench.add_node(i, c) for i, c in enumerate(pool))) if k]
        grants = await run_phase(
            f"grants x{len(pool)} agents",
            args.grants,
            pool,
            pid,
            lambda i, c: bench.grant(keys[i % len(keys)], i, c),
        )
        burst = await run_phase(f"burst of {args.burst} AddNodes", args.burst, pool, pid, adder)
    finally:
        demo.stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    signing = rsa_signing_rate()
    print(
        f"keysvc serve (1 process, SQLite in {workdir}); client: raw asyncio HTTP/1.1; {os.cpu_count()} CPUs"
    )
    for phase in (add, grants, burst):
        print(phase.line())
    print(f"baseline: raw RSA-2048 PKCS#1 v1.5 SHA-256 signing, one core: {signing:8.1f} signatures/s")
    print(f"grants/s as a share of the raw signing rate: {grants.rate / signing:.1%}")
    print(f"burst: {args.burst} AddNodes in {burst.seconds:.2f} s with {burst.errors} errors")
    if burst.errors:
        raise SystemExit(f"burst had {burst.errors} errors")


async def _ok(pending: Awaitable[dict[str, Any] | None]) -> bool:
    return (await pending) is not None


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--addnodes", type=int, default=3000)
    parser.add_argument("--grants", type=int, default=6000)
    parser.add_argument("--burst", type=int, default=10_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
