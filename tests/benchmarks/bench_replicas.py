"""Benchmark: AddNodes/s, upload grants/s and latency at 200 concurrent clients, over HTTP, for
1 replica on SQLite (the baseline), 1 replica on PostgreSQL and 2 replicas on PostgreSQL, in one run.

Run: ``.venv/bin/python -m tests.benchmarks.bench_replicas [--clients 200] [--seconds 10]``

Every figure comes from real ``keysvc serve`` processes on loopback; the client spreads requests
round robin over the replicas, as a load balancer would, over keep-alive connections.
A grant asks for one signed URL, so it pays for authentication (a database transaction) and one
RSA signature. After each scenario ``keysvc audit verify`` checks the chain the load produced.
Everything (client, replicas, PostgreSQL) shares this machine's CPUs: on a small machine the
replicas compete with each other and with the client, which the printed client CPU share shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests import servers
from tests.benchmarks.bench_service import Connection, cpu_seconds

SUFFIX = "var-log-cloud-init.log-0a1b2c3d/g000001/0000000000000000-0000000000000100.gz"
INSTANCE = "i-0123456789abcdef0"

Request = tuple[str, dict[str, Any], str]
"""(path, JSON body, bearer token) of one POST."""


@dataclass(frozen=True)
class Phase:
    """What one timed phase measured."""

    ok: int
    errors: Counter[str]
    seconds: float
    latencies: list[float]
    client_cpu: float
    replicas_cpu: float
    database_cpu: float

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        """Latency at quantile ``q`` in milliseconds."""
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[round(q * 1000) - 1] * 1000


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (PostgreSQL's backends live under its postmaster)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_of(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (gone ones count as 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


async def drive(
    ports: list[int],
    make: Callable[[int, int], Request],
    *,
    clients: int,
    seconds: float,
    expect: int,
    watch: Watch,
) -> Phase:
    """Run ``clients`` concurrent clients for ``seconds``; client ``w`` sends ``make(w, i)`` as request i.

    Client ``w`` holds one keep-alive connection to each replica (bench_service's raw asyncio
    ``Connection``) and goes round robin over them.
    """
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = 0.0

    async def worker(w: int) -> int:
        done = 0
        i = 0
        connections = [Connection(port) for port in ports]
        while time.perf_counter() < deadline:
            path, body, token = make(w, i)
            connection = connections[(w + i) % len(ports)]
            i += 1
            start = time.perf_counter()
            try:
                status, _ = await connection.post(path, body, token)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] += 1
                connection.streams = None
                continue
            if status == expect:
                latencies.append(time.perf_counter() - start)
                done += 1
            else:
                errors[str(status)] += 1
        for connection in connections:
            if connection.streams is not None:
                connection.streams[1].close()
        return done

    replicas_pids, database_pids = watch.replicas(), watch.database()
    before = (time.process_time(), cpu_of(replicas_pids), cpu_of(database_pids))
    start = time.perf_counter()
    deadline = start + seconds
    done = sum(await asyncio.gather(*(worker(w) for w in range(clients))))
    elapsed = time.perf_counter() - start
    after = (time.process_time(), cpu_of(replicas_pids), cpu_of(database_pids))
    cpu = [(b - a) / elapsed for a, b in zip(before, after, strict=True)]
    return Phase(done, errors, elapsed, latencies, cpu[0], cpu[1], cpu[2])


@dataclass(frozen=True)
class Watch:
    """Which processes' CPU a phase reports: the replicas, and PostgreSQL with its backends."""

    replica_pids: tuple[int, ...]
    postgres_pid: int | None

    def replicas(self) -> list[int]:
        """The keysvc serve processes."""
        return list(self.replica_pids)

    def database(self) -> list[int]:
        """The PostgreSQL server and its backends (none for SQLite, which runs inside the replica)."""
        return descendants(self.postgres_pid) if self.postgres_pid is not None else []


def add_node_request(token: str, tag: str) -> Callable[[int, int], Request]:
    """AddNode requests: every client adds its own nodes, each once."""

    def make(w: int, i: int) -> Request:
        body = {
            "cluster": "bench",
            "node": f"{tag}-{w}-{i}",
            "instance": INSTANCE,
            "region": "eu",
            "operation_id": f"{tag}-{w}-{i}",
            "started_at": time.time(),
        }
        return "/v1/nodes", body, token

    return make


def grant_request(keys: list[tuple[str, str]]) -> Callable[[int, int], Request]:
    """Upload grant requests: client ``w`` uses node ``w``'s key, one chunk name per request."""

    def make(w: int, _i: int) -> Request:
        node, key = keys[w % len(keys)]
        body = {"cluster": "bench", "node": node, "region": "eu", "objects": [{"name": SUFFIX}]}
        return "/v1/ingest/grants", body, key

    return make


async def mint_keys(url: str, token: str, count: int) -> list[tuple[str, str]]:
    """AddNode ``count`` nodes (50 at a time) and return (node, key) pairs."""
    make = add_node_request(token, "grant")
    keys: list[tuple[str, str]] = []
    async with httpx.AsyncClient(timeout=120) as client:
        for first in range(0, count, 50):
            requests = [make(w, 0) for w in range(first, min(count, first + 50))]
            responses = await asyncio.gather(
                *(
                    client.post(url + path, json=body, headers={"Authorization": f"Bearer {token}"})
                    for path, body, token in requests
                )
            )
            for (_, body, _), response in zip(requests, responses, strict=True):
                response.raise_for_status()
                keys.append((body["node"], response.json()["key"]))
    return keys


@dataclass(frozen=True)
class Result:
    """One scenario's figures."""

    name: str
    add_nodes: Phase
    grants: Phase
    verified: str


def run_scenario(
    name: str,
    database: str,
    replicas: int,
    args: argparse.Namespace,
    *,
    workdir: Path,
    postgres_pid: int | None,
) -> Result:
    """Start ``replicas`` processes on ``database``, measure AddNodes then grants, verify the chain."""
    group = servers.keysvc_replicas(database, workdir)
    try:
        for _ in range(replicas):
            group.start()
        token = group.setup.provisioner_token
        ports = [int(url.rsplit(":", 1)[1]) for url in group.urls]
        watch = Watch(tuple(process.pid for process in group.processes), postgres_pid)
        clients, seconds = args.clients, args.seconds
        warm = asyncio.run(
            drive(
                ports, add_node_request(token, "warm"), clients=clients, seconds=1.0, expect=201, watch=watch
            )
        )
        if warm.ok == 0:
            raise SystemExit(f"{name}: no AddNode succeeded during warm-up: {dict(warm.errors)}")
        add_nodes = asyncio.run(
            drive(
                ports,
                add_node_request(token, "add"),
                clients=clients,
                seconds=seconds,
                expect=201,
                watch=watch,
            )
        )
        keys = asyncio.run(mint_keys(group.urls[0], token, clients))
        grants = asyncio.run(
            drive(ports, grant_request(keys), clients=clients, seconds=seconds, expect=200, watch=watch)
        )
        verify = servers.run_cli(["keysvc", "audit", "verify"], env=group.env(), check=False, timeout=600)
        verified = "ok" if verify.returncode == 0 else f"FAILED ({verify.stderr.strip()[:200]})"
    finally:
        group.close()
    return Result(name, add_nodes, grants, verified)


def show(results: list[Result], clients: int) -> None:
    """Print the table and the ratios against the SQLite baseline and one PostgreSQL replica."""
    print(f"\n{clients} concurrent clients; rates count 2xx answers only; latency in ms")
    head = f"{'scenario':<22}{'AddNode/s':>10}{'p50':>8}{'p99':>8}{'grants/s':>10}{'p50':>8}{'p99':>8}"
    print(head + f"{'errors':>8}  audit verify")
    for r in results:
        errors = sum(r.add_nodes.errors.values()) + sum(r.grants.errors.values())
        print(
            f"{r.name:<22}{r.add_nodes.rate:>10.0f}{r.add_nodes.percentile(0.5):>8.1f}"
            f"{r.add_nodes.percentile(0.99):>8.1f}{r.grants.rate:>10.0f}{r.grants.percentile(0.5):>8.1f}"
            f"{r.grants.percentile(0.99):>8.1f}{errors:>8}  {r.verified}"
        )
        for phase, kind in ((r.add_nodes, "AddNode"), (r.grants, "grant")):
            if phase.errors:
                print(f"  {kind} errors: {dict(phase.errors)}")
    print("\nCPU in use during each phase, in cores (1.00 = one core busy all the time):")
    print(f"{'scenario':<22}{'phase':>9}{'replicas':>10}{'postgres':>10}{'client':>8}")
    for r in results:
        for phase, kind in ((r.add_nodes, "AddNode"), (r.grants, "grant")):
            print(
                f"{r.name:<22}{kind:>9}{phase.replicas_cpu:>10.2f}{phase.database_cpu:>10.2f}{phase.client_cpu:>8.2f}"
            )
    base = results[0]
    print(f"\nratios against the baseline ({base.name}):")
    for r in results[1:]:
        print(
            f"  {r.name:<22} AddNodes x{r.add_nodes.rate / base.add_nodes.rate:.2f}   "
            f"grants x{r.grants.rate / base.grants.rate:.2f}   "
            f"AddNode p99 x{r.add_nodes.percentile(0.99) / base.add_nodes.percentile(0.99):.2f}   "
            f"grant p99 x{r.grants.percentile(0.99) / base.grants.percentile(0.99):.2f}"
        )
    if len(results) == 3:
        one, two = results[1], results[2]
        print(
            f"  2 vs 1 PostgreSQL replica: AddNodes x{two.add_nodes.rate / one.add_nodes.rate:.2f}   "
            f"grants x{two.grants.rate / one.grants.rate:.2f}"
        )


def main() -> None:
    """Run the three scenarios and print their figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed phase (10)")
    parser.add_argument("--pool-max-size", type=int, default=10, help="PostgreSQL pool size per replica (10)")
    args = parser.parse_args()
    print(f"keysvc replicas benchmark on {os.cpu_count()} CPU(s); {args.seconds:.0f} s per phase")
    postgres = servers.start_postgres()
    servers.wait_for_postgres(postgres)
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
            root = Path(tmp)
            sqlite_dir = root / "sqlite"
            sqlite_dir.mkdir()
            results.append(
                run_scenario(
                    "SQLite, 1 replica",
                    f"sqlite:///{sqlite_dir}/state/keysvc.db",
                    1,
                    args,
                    workdir=sqlite_dir,
                    postgres_pid=None,
                )
            )
            for replicas in (1, 2):
                name = f"bench_{uuid.uuid4().hex[:8]}"
                dsn = servers.create_database(postgres, name) + f"?pool_max_size={args.pool_max_size}"
                workdir = root / name
                workdir.mkdir()
                label = f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}"
                results.append(
                    run_scenario(
                        label, dsn, replicas, args, workdir=workdir, postgres_pid=postgres.process.pid
                    )
                )
                print(f"  done: {label}", flush=True)
    finally:
        postgres.close()
    show(results, args.clients)


if __name__ == "__main__":
    main()
