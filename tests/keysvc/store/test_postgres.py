"""What only the PostgreSQL store has to get right: pool settings, replicas sharing one database, outages.

Each "replica" here is its own :class:`PostgresStore` (its own connection pool) and its own
:class:`KeyService`, so everything they share goes through the database, as with real processes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from keysvc.core import auditchain
from keysvc.core.clock import ManualClock
from keysvc.core.models import AddNode, AuditEvent, EventType, KeyFilter, KeyRecord, KeyState, Scope
from keysvc.errors import ConfigError, Conflict, MigrationError, Refused, StoreUnavailable
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.keys import KeyService
from keysvc.store import open_store
from keysvc.store.postgres import PostgresStore, node_lock_key
from keysvc.store.postgres_url import describe, split_dsn
from keysvc.wire import keyformat
from tests import servers
from tests.keysvc.conftest import REGIONS, ingest_for

T0 = 1_800_000_000.0
INSTANCE = "i-0123456789abcdef0"


@pytest.fixture
def dsn(postgres: servers.Server) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped afterwards."""
    name = f"keysvc_{uuid.uuid4().hex[:16]}"
    servers.wait_for_postgres(postgres)
    yield servers.create_database(postgres, name)
    servers.drop_database(postgres, name)


@pytest.fixture
def replicas(
    dsn: str, signer: AuditSigner, clock: ManualClock
) -> Iterator[Callable[[int], list[KeyService]]]:
    """Build ``n`` key services over one database, each with its own pool, one signer, one clock."""
    opened: list[KeyService] = []

    def build(n: int) -> list[KeyService]:
        for _ in range(n):
            opened.append(KeyService(open_store(dsn), signer, clock, regions=REGIONS))
        return opened

    yield build
    for service in opened:
        service.close()


def add(node: str, op: str, cluster: str = "prod") -> AddNode:
    """An AddNode for ``node`` that began at T0."""
    return AddNode(cluster=cluster, node=node, instance=INSTANCE, region="eu", operation_id=op, started_at=T0)


def live_keys(service: KeyService, node: str) -> list[KeyRecord]:
    """The node's live keys, straight from the store."""
    return service.list_keys(cluster="prod", node=node, state=KeyState.LIVE)


def test_pool_parameters_come_off_the_dsn() -> None:
    """pool_* parameters configure the pool and are removed; libpq's own parameters stay."""
    url, pool = split_dsn(
        "postgresql://u:secret@db:5433/keysvc?pool_max_size=3&pool_timeout=1.5&sslmode=disable"
    )
    assert url == "postgresql://u:secret@db:5433/keysvc?sslmode=disable"
    assert (pool.min_size, pool.max_size, pool.timeout, pool.connect_timeout) == (1, 3, 1.5, 5)
    _, own_timeout = split_dsn("postgresql://db/keysvc?connect_timeout=2")
    assert own_timeout.connect_timeout == 0
    assert describe("postgresql://u:secret@db:5433/keysvc?pool_max_size=3") == "postgresql://u@db:5433/keysvc"


@pytest.mark.parametrize(
    "query", ["pool_min_size=5&pool_max_size=2", "pool_max_size=0", "pool_max_size=x", "pool_timeout=0"]
)
def test_bad_pool_parameters_are_config_errors(query: str) -> None:
    """Unusable pool bounds are refused before anything connects, without echoing the password."""
    with pytest.raises(ConfigError) as caught:
        split_dsn(f"postgresql://u:secret@db/keysvc?{query}")
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:s3cretpw%zz@127.0.0.1:1/keysvc",
        "postgresql://u:s3cretpw@127.0.0.1:1/keysvc?no_such_option=1",
        "postgresql://u:s3cretpw@[::1/keysvc",
        "postgresql://u:s3cretpw@db:port/keysvc",
    ],
)
def test_malformed_dsn_is_a_config_error_that_never_shows_the_password(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL libpq or urllib cannot parse is a ConfigError, and neither it nor any log names the password."""
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as caught:
        PostgresStore(dsn)
    assert "s3cretpw" not in str(caught.value)
    assert "s3cretpw" not in caplog.text
    assert "s3cretpw" not in describe(dsn)


def test_node_lock_keys_are_stable_int4() -> None:
    """A node's advisory lock id is the same in every process and fits PostgreSQL's int4."""
    assert node_lock_key("prod", "n1") == node_lock_key("prod", "n1")
    assert node_lock_key("prod", "n1") != node_lock_key("prod", "n2")
    assert -(2**31) <= node_lock_key("a", "b") < 2**31


def test_replicas_starting_together_migrate_once(dsn: str) -> None:
    """Six stores migrating one fresh database at once all end at version 2, each applied exactly once."""
    stores = [PostgresStore(dsn) for _ in range(6)]
    try:
        with ThreadPoolExecutor(6) as pool:
            versions = list(pool.map(lambda store: store.migrate(), stores))
    finally:
        for store in stores:
            store.close()
    assert versions == [2] * 6
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(1,), (2,)]


def test_newer_schema_is_refused(dsn: str) -> None:
    """A database migrated by a newer keysvc is refused rather than misread."""
    open_store(dsn).close()
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO schema_version (version, name) VALUES (99, 'future')")
    with pytest.raises(MigrationError, match="newer"):
        open_store(dsn)


def test_constraint_errors_name_no_row_contents(dsn: str) -> None:
    """A refused row is a Conflict whose message names the rule, never the row (which holds a hash)."""
    store = open_store(dsn)
    minted = keyformat.mint()
    record = KeyRecord(
        key_id=minted.key_id,
        cluster="c",
        node="n",
        instance=INSTANCE,
        region="eu",
        operation_id="op",
        started_at=T0,
        issued_at=T0,
        expires_at=T0 + 3600,
        state=KeyState.REVOKED,
        key_hash=keyformat.key_hash(minted.key),
    )
    try:
        with pytest.raises(Conflict) as caught, store.transaction() as tx:
            tx.insert_key(record)
    finally:
        store.close()
    assert "check constraint" in str(caught.value)
    assert minted.key_id not in str(caught.value)
    assert record.key_hash is not None
    assert record.key_hash.hex() not in str(caught.value)


def test_first_appends_to_an_empty_chain_from_two_pools_form_one_chain(dsn: str, signer: AuditSigner) -> None:
    """Eight appenders racing on an empty chain (no head row to lock yet) still build one valid chain."""
    stores = [open_store(dsn) for _ in range(2)]
    barrier = threading.Barrier(8)

    def append(i: int) -> None:
        barrier.wait()
        with stores[i % 2].transaction() as tx:
            record = auditchain.seal(
                AuditEvent(at=T0, event=EventType.USED, detail={"i": i}), tx.lock_audit_head(), signer
            )
            tx.append_audit(record)
            tx.write_audit_head(auditchain.sign_head(record, signer))

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(append, range(8)))
        with stores[0].read() as reader:
            records, head = list(reader.iter_audit()), reader.audit_head()
    finally:
        for store in stores:
            store.close()
    report = auditchain.verify_chain(records, head, {signer.signer_id: signer.public_key})
    assert report.ok
    assert report.records == 8
    assert sorted(r.event.detail["i"] for r in records) == list(range(8))


def test_concurrent_add_nodes_on_two_replicas_leave_one_live_key(
    replicas: Callable[[int], list[KeyService]],
) -> None:
    """Twenty AddNodes for one node, split over two replicas, all succeed and leave exactly one live key."""
    services = replicas(2)
    barrier = threading.Barrier(20)

    def mint(i: int) -> str:
        barrier.wait()
        return services[i % 2].add_node(add("node-1", f"op-{i}"), actor="provisioner").record.key_id

    with ThreadPoolExecutor(20) as pool:
        issued = list(pool.map(mint, range(20)))
    live = live_keys(services[0], "node-1")
    assert len(live) == 1
    records = services[1].audit.records(node="node-1", event=EventType.ISSUED)
    assert len(records) == 20
    # The key still live is the one the chain issued last; all the others were superseded.
    assert records[-1].event.key_id == live[0].key_id
    revoked = services[0].list_keys(cluster="prod", node="node-1", state=KeyState.REVOKED)
    assert {k.key_id for k in revoked} == set(issued) - {live[0].key_id}
    assert services[1].audit.verify().records == 39


def test_revocation_on_one_replica_is_refused_by_the_other(
    replicas: Callable[[int], list[KeyService]], clock: ManualClock
) -> None:
    """A key revoked through replica A is refused by replica B at its very next check."""
    a, b = replicas(2)
    issued = a.add_node(add("node-7", "op-7"), actor="provisioner")
    wanted = Scope(cluster="prod", node="node-7", region="eu")
    assert (
        ingest_for(b, clock).authenticate(issued.key, wanted=wanted, source="10.0.0.7").key_id
        == issued.record.key_id
    )
    assert a.revoke(key_id=issued.record.key_id, reason="terminated", actor="ops") == [issued.record.key_id]
    with pytest.raises(Refused) as caught:
        ingest_for(b, clock).authenticate(issued.key, wanted=wanted, source="10.0.0.7")
    assert caught.value.reason == "revoked"


def test_sweeping_replicas_expire_each_key_once(
    replicas: Callable[[int], list[KeyService]], clock: ManualClock
) -> None:
    """Three replicas sweeping at once expire every due key exactly once, with one record each."""
    services = replicas(3)
    for i in range(30):
        services[i % 3].add_node(add(f"node-{i}", f"op-{i}"), actor="provisioner")
    clock.advance(3600)
    barrier = threading.Barrier(3)

    def sweep(service: KeyService) -> list[str]:
        barrier.wait()
        return service.sweep()

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(sweep, services))
    expired = [key_id for result in results for key_id in result]
    assert len(expired) == len(set(expired)) == 30
    assert len(services[0].audit.records(event=EventType.EXPIRED)) == 30
    assert services[2].audit.verify().ok


def test_mixed_traffic_on_three_replicas_never_deadlocks(
    replicas: Callable[[int], list[KeyService]], clock: ManualClock
) -> None:
    """AddNodes, new-source grants and cluster revocations interleave on three replicas without errors."""
    services = replicas(3)
    keys = [services[0].add_node(add(f"node-{i}", f"op-{i}"), actor="p").key for i in range(6)]
    problems: list[BaseException] = []

    def grants(n: int) -> None:
        for j in range(25):
            try:
                ingest_for(services[n % 3], clock).authenticate(
                    keys[(n + j) % 6],
                    wanted=Scope(cluster="prod", node=f"node-{(n + j) % 6}", region="eu"),
                    source=f"10.0.{n}.{j}",
                )
            except Refused:
                pass  # revoked meanwhile: a correct answer
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                problems.append(exc)

    def churn(n: int) -> None:
        for j in range(8):
            try:
                services[n % 3].add_node(add(f"node-{j % 6}", f"churn-{n}-{j}"), actor="p")
                if j % 3 == 0:
                    services[(n + 1) % 3].revoke(cluster="prod", reason="drill", actor="ops")
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                problems.append(exc)

    threads = [threading.Thread(target=grants, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=churn, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    for i in range(6):
        assert len(live_keys(services[1], f"node-{i}")) <= 1
    assert services[2].audit.verify().ok


@pytest.mark.integration
def test_store_fails_cleanly_without_the_database_and_recovers() -> None:
    """With PostgreSQL stopped, ping and transactions raise StoreUnavailable; after a restart they work."""
    server = servers.start_postgres()
    try:
        servers.wait_for_postgres(server)
        dsn = servers.create_database(server, "outage") + "?pool_timeout=2"
        store = open_store(dsn)
        try:
            store.ping()
            servers.stop_postgres(server)
            with pytest.raises(StoreUnavailable):
                store.ping()
            with pytest.raises(StoreUnavailable), store.transaction() as tx:
                tx.find_keys(KeyFilter())
            servers.restart_postgres(server)

            def recovered() -> bool:
                try:
                    with store.transaction() as tx:
                        return tx.find_keys(KeyFilter()) == []
                except StoreUnavailable:
                    return False

            servers.wait_until(recovered, timeout=30, what="the store to reconnect")
            store.ping()
        finally:
            store.close()
    finally:
        server.close()


@pytest.mark.integration
def test_first_transaction_after_a_restart_succeeds() -> None:
    """Pooled connections killed by a database restart are replaced on BEGIN; the first request just works."""
    server = servers.start_postgres()
    try:
        servers.wait_for_postgres(server)
        dsn = servers.create_database(server, "restart") + "?pool_min_size=3&pool_max_size=3"
        store = PostgresStore(dsn)
        try:
            store.migrate()
            servers.wait_until(lambda: store.pool_stats()["pool_available"] == 3, what="3 idle connections")
            servers.stop_postgres(server)
            servers.restart_postgres(server)
            store.ping()
            with store.transaction() as tx:
                assert tx.find_keys(KeyFilter()) == []
            with store.transaction() as tx:
                assert tx.find_keys(KeyFilter()) == []
        finally:
            store.close()
    finally:
        server.close()


def test_exchanges_with_different_nonces_on_two_replicas_yield_one_session(
    replicas: Callable[[int], list[KeyService]], clock: ManualClock
) -> None:
    """Twenty exchanges of one key with twenty nonces over two replicas: one session, nineteen replays."""
    services = replicas(2)
    issued = services[0].add_node(add("node-3", "op-3"), actor="provisioner")
    ingests = [ingest_for(service, clock) for service in services]
    barrier = threading.Barrier(20)

    def exchange(i: int) -> str:
        barrier.wait()
        try:
            return ingests[i % 2].exchange(issued.key, chr(ord("a") + i) * 32, source=f"10.0.0.{i}").session
        except Refused as exc:
            return exc.reason

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(exchange, range(20)))
    sessions = [o for o in outcomes if o.startswith("nls1_")]
    assert len(sessions) == 1
    assert outcomes.count("replayed") == 19
    rec = services[1].get_key(issued.record.key_id)
    assert rec.exchanges == 1
    assert rec.replays == 19
    assert ingests[1].authenticate(sessions[0], wanted=None, source="10.0.0.1").key_id == rec.key_id
    refused = services[0].audit.records(key_id=rec.key_id, event=EventType.REFUSED)
    assert [r.event.reason for r in refused] == ["replayed"] * 19
    assert services[0].audit.verify().records == 22  # issued, exchanged, 19 replays, first use
