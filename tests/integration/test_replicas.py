"""Two real ``keysvc serve`` replicas on one PostgreSQL database, driven concurrently over HTTP.

Invariants checked against the database itself: one live key per node, no key without its
``issued`` record, revocation through one replica refused by the other at its next request, and
one audit chain that ``keysvc audit verify`` accepts, also after a replica is killed with SIGKILL
in the middle of a burst.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from keysvc.store.postgres_url import describe, split_dsn
from tests import servers

pytestmark = pytest.mark.integration

CLUSTER = "prod"
INSTANCE = "i-0123456789abcdef0"
SUFFIX = "var-log-cloud-init.log-0a1b2c3d/g000001/0000000000000000-0000000000000100.gz"


@pytest.fixture
def replicas(postgres: servers.Server, tmp_path: Path) -> Iterator[servers.KeysvcReplicas]:
    """Two replicas on a fresh database; the first starts alone and creates the audit signing key."""
    name = f"replicas_{uuid.uuid4().hex[:12]}"
    servers.wait_for_postgres(postgres)
    group = servers.keysvc_replicas(servers.create_database(postgres, name), tmp_path)
    try:
        group.start()
        group.start()
        yield group
    finally:
        group.close()
        servers.drop_database(postgres, name)


def add_node(client: httpx.Client, url: str, token: str, node: str, op: str) -> httpx.Response:
    """POST an AddNode for ``node`` with operation id ``op``."""
    body = {
        "cluster": CLUSTER,
        "node": node,
        "instance": INSTANCE,
        "region": "eu",
        "operation_id": op,
        "started_at": time.time(),
    }
    return client.post(f"{url}/v1/nodes", json=body, headers={"Authorization": f"Bearer {token}"})


def grant(client: httpx.Client, url: str, key: str, node: str) -> httpx.Response:
    """Ask for one upload URL with ``key``."""
    body = {"cluster": CLUSTER, "node": node, "region": "eu", "objects": [{"name": SUFFIX}]}
    return client.post(f"{url}/v1/ingest/grants", json=body, headers={"Authorization": f"Bearer {key}"})


def query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only query against the shared database."""
    with psycopg.connect(split_dsn(dsn)[0]) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def check_database_invariants(dsn: str) -> None:
    """One live key per node at most; every key has exactly one issued record; every issued record a key."""
    assert (
        query(dsn, "SELECT cluster, node FROM keys WHERE state = 'live' GROUP BY 1, 2 HAVING count(*) > 1")
        == []
    )
    assert (
        query(
            dsn,
            "SELECT k.key_id FROM keys k "
            "LEFT JOIN audit_records a ON a.key_id = k.key_id AND a.event = 'issued' "
            "GROUP BY k.key_id HAVING count(a.seq) <> 1",
        )
        == []
    )
    assert (
        query(
            dsn,
            "SELECT a.seq FROM audit_records a LEFT JOIN keys k ON k.key_id = a.key_id "
            "WHERE a.event = 'issued' AND k.key_id IS NULL",
        )
        == []
    )


def audit_verify(group: servers.KeysvcReplicas) -> subprocess.CompletedProcess[str]:
    """Run the real ``keysvc audit verify`` against the shared database."""
    return servers.run_cli(["keysvc", "audit", "verify"], env=group.env(), check=False)


def test_db_migrate_from_several_processes_at_once(postgres: servers.Server, tmp_path: Path) -> None:
    """Four concurrent `keysvc db migrate` runs succeed, apply each version once, never print the password."""
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    servers.wait_for_postgres(postgres)
    dsn = servers.create_database(postgres, name)
    # The test server trusts every local connection, so a password in the URL is accepted and ignored.
    with_password = dsn.replace("test@", "test:s3cret-pw@") + "?pool_timeout=30"
    env = {**os.environ, "KEYSVC_DATABASE": with_password}
    argv = [str(Path(sys.executable).parent / "keysvc"), "db", "migrate", "--output", "json"]
    try:
        runs = [
            subprocess.Popen(
                argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        outputs = [run.communicate(timeout=60) for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
        for stdout, stderr in outputs:
            assert json.loads(stdout) == {"database": describe(dsn), "schema_version": 2}
            assert "s3cret-pw" not in stdout + stderr
        assert query(dsn, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,)]
        assert len(query(dsn, "SELECT 1 FROM pg_tables WHERE tablename = 'audit_records'")) == 1
    finally:
        servers.drop_database(postgres, name)


def test_two_replicas_keep_one_live_key_one_chain_and_revocations(replicas: servers.KeysvcReplicas) -> None:
    """Concurrent AddNodes, grants and revocations across two replicas keep every invariant."""
    token = replicas.setup.provisioner_token
    admin = {"Authorization": f"Bearer {replicas.setup.admin_token}"}
    nodes = [f"node-{i}" for i in range(8)]
    barrier = threading.Barrier(24)

    def racing_add(i: int) -> dict[str, Any]:
        node = nodes[i % len(nodes)]
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            results = []
            for j in range(2):
                response = add_node(client, replicas.urls[(i + j) % 2], token, node, f"op-{i}-{j}")
                assert response.status_code == 201, response.text
                results.append(response.json())
        return results[-1]

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(racing_add, range(24)))
    check_database_invariants(replicas.database)
    live = dict(query(replicas.database, "SELECT node, key_id FROM keys WHERE state = 'live'"))
    assert sorted(live) == nodes
    # The key left live is the one the last answer for that node carried (by the chain's order).
    last_issued = dict(
        query(replicas.database, "SELECT node, key_id FROM audit_records WHERE event = 'issued' ORDER BY seq")
    )
    assert live == last_issued
    assert set(live.values()) <= {answer["key_id"] for answer in answers}

    # One more AddNode per node, alternating replicas, gives a key known to be current.
    current: dict[str, tuple[str, str]] = {}
    with httpx.Client(timeout=30) as client:
        for i, node in enumerate(nodes):
            response = add_node(client, replicas.urls[i % 2], token, node, f"final-{node}")
            assert response.status_code == 201, response.text
            assert response.json()["superseded"] == [live[node]]
            current[node] = (response.json()["key_id"], response.json()["key"])
    check_database_invariants(replicas.database)

    stop = threading.Event()
    grant_statuses: list[int] = []

    def keep_granting(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            node = nodes[4 + n % 4]  # nodes 4..7 are never revoked
            while not stop.is_set():
                grant_statuses.append(grant(client, replicas.urls[n % 2], current[node][1], node).status_code)

    background = [threading.Thread(target=keep_granting, args=(n,)) for n in range(6)]
    for thread in background:
        thread.start()
    try:
        with httpx.Client(timeout=30) as client:
            for i, node in enumerate(nodes[:4]):
                via, other = replicas.urls[i % 2], replicas.urls[(i + 1) % 2]
                key_id, key = current[node]
                assert grant(client, other, key, node).status_code == 200
                revoked = client.post(
                    f"{via}/v1/admin/keys/{key_id}/revoke", json={"reason": "drill"}, headers=admin
                )
                assert revoked.status_code == 200, revoked.text
                assert revoked.json()["revoked"] == [key_id]
                # The very next request to the other replica is refused.
                assert grant(client, other, key, node).status_code == 401
                assert grant(client, via, key, node).status_code == 401
    finally:
        stop.set()
        for thread in background:
            thread.join()
    assert grant_statuses
    assert set(grant_statuses) == {200}
    check_database_invariants(replicas.database)
    verified = audit_verify(replicas)
    assert verified.returncode == 0, verified.stderr


def test_kill_9_of_one_replica_mid_burst_loses_nothing(replicas: servers.KeysvcReplicas) -> None:
    """SIGKILL to one replica during an AddNode burst: no key lacks its record, the other keeps serving."""
    token = replicas.setup.provisioner_token
    survivor, victim = replicas.urls
    victim_process = replicas.processes[1]
    answered_by_victim = threading.Event()
    survivor_statuses: list[int] = []
    victim_outcomes: list[str] = []

    def burst(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            for j in range(12):
                node = f"burst-{n}-{j % 3}"
                url = victim if j % 2 else survivor
                try:
                    response = add_node(client, url, token, node, f"burst-{n}-{j}")
                except httpx.TransportError:
                    victim_outcomes.append("connection lost")
                    continue
                if url == survivor:
                    survivor_statuses.append(response.status_code)
                else:
                    victim_outcomes.append(str(response.status_code))
                    answered_by_victim.set()

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(burst, n) for n in range(16)]
        answered_by_victim.wait(timeout=30)
        time.sleep(0.2)
        os.kill(victim_process.pid, signal.SIGKILL)
        for future in futures:
            future.result()
    victim_process.wait(timeout=10)
    assert "connection lost" in victim_outcomes
    assert len(survivor_statuses) == 16 * 6
    assert set(survivor_statuses) == {201}
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{survivor}/readyz").status_code == 200
        assert add_node(client, survivor, token, "after-the-kill", "after").status_code == 201
    check_database_invariants(replicas.database)
    verified = audit_verify(replicas)
    assert verified.returncode == 0, verified.stderr


def test_sweepers_on_two_replicas_expire_each_key_once(postgres: servers.Server, tmp_path: Path) -> None:
    """Two replicas sweeping every 0.1 s expire 2-second keys exactly once each, with one record each."""
    name = f"sweep_{uuid.uuid4().hex[:12]}"
    servers.wait_for_postgres(postgres)
    group = servers.keysvc_replicas(
        servers.create_database(postgres, name), tmp_path, key_ttl_seconds=2, sweep_interval_seconds=0.1
    )
    try:
        group.start()
        group.start()
        with httpx.Client(timeout=30) as client:
            for i in range(20):
                url = group.urls[i % 2]
                assert (
                    add_node(client, url, group.setup.provisioner_token, f"node-{i}", f"op-{i}").status_code
                    == 201
                )
        servers.wait_until(
            lambda: query(group.database, "SELECT count(*) FROM keys WHERE state = 'live'") == [(0,)],
            timeout=30,
            what="the sweepers to expire every key",
        )
        time.sleep(0.5)  # a few more sweeps on both replicas
        expired = query(
            group.database, "SELECT key_id, count(*) FROM audit_records WHERE event = 'expired' GROUP BY 1"
        )
        assert len(expired) == 20
        assert {count for _, count in expired} == {1}
        assert query(group.database, "SELECT count(*) FROM keys WHERE key_hash IS NOT NULL") == [(0,)]
        check_database_invariants(group.database)
        verified = audit_verify(group)
        assert verified.returncode == 0, verified.stderr
    finally:
        group.close()
        servers.drop_database(postgres, name)


def test_losing_the_database_answers_503_and_recovers(tmp_path: Path) -> None:
    """With PostgreSQL stopped, /readyz and AddNode answer 503; once it is back, both work again unaided."""
    server = servers.start_postgres()
    servers.wait_for_postgres(server)
    group = servers.keysvc_replicas(servers.create_database(server, "outage") + "?pool_timeout=2", tmp_path)
    try:
        url = group.start()
        token = group.setup.provisioner_token
        with httpx.Client(timeout=30) as client:
            assert add_node(client, url, token, "node-1", "before").status_code == 201
            servers.stop_postgres(server)
            assert client.get(f"{url}/readyz").status_code == 503
            down = add_node(client, url, token, "node-1", "during")
            assert (down.status_code, down.json()["error"]) == (503, "unavailable")
            assert client.get(f"{url}/healthz").status_code == 200
            servers.restart_postgres(server)
            servers.wait_until(
                lambda: client.get(f"{url}/readyz").status_code == 200, timeout=30, what="readiness"
            )
            assert add_node(client, url, token, "node-1", "after").status_code == 201
        check_database_invariants(group.database)
        verified = audit_verify(group)
        assert verified.returncode == 0, verified.stderr
    finally:
        group.close()
        server.close()
