"""The store contract, run against every store backend (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from keysvc.core import auditchain
from keysvc.core.models import AuditEvent, AuditFilter, EventType, KeyFilter, KeyRecord, KeyState
from keysvc.errors import ConfigError, Conflict, MigrationError, StoreError, StoreUnavailable
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.ports import Store
from keysvc.store import open_store
from keysvc.store.sqlite import SqliteStore
from keysvc.wire import keyformat

T0 = 1_800_000_000.0


def key(
    key_id: str | None = None, node: str = "n1", state: KeyState = KeyState.LIVE, op: str = "op"
) -> KeyRecord:
    """A key record with defaults."""
    minted = keyformat.mint(key_id)
    return KeyRecord(
        key_id=minted.key_id,
        cluster="c",
        node=node,
        instance="i-0123456789abcdef0",
        region="eu",
        operation_id=op,
        started_at=T0,
        issued_at=T0,
        expires_at=T0 + 3600,
        state=state,
        key_hash=keyformat.key_hash(minted.key) if state is KeyState.LIVE else None,
    )


def append(store: Store, signer: AuditSigner, event: AuditEvent) -> None:
    """Seal and append one audit event with its head, as the service does."""
    with store.transaction() as tx:
        record = auditchain.seal(event, tx.lock_audit_head(), signer)
        tx.append_audit(record)
        tx.write_audit_head(auditchain.sign_head(record, signer))


def test_insert_and_get_round_trip(store: Store) -> None:
    """A key written in a transaction reads back field for field."""
    record = key()
    with store.transaction() as tx:
        tx.insert_key(record)
    with store.read() as reader:
        assert reader.get_key(record.key_id) == record
        assert reader.get_key("aaaaaaaaaaaaaaaa") is None


def test_transaction_rolls_back_on_error(store: Store) -> None:
    """An exception inside a transaction leaves nothing behind."""
    record = key()

    def fail_midway() -> None:
        with store.transaction() as tx:
            tx.insert_key(record)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_midway()
    with store.read() as reader:
        assert reader.get_key(record.key_id) is None


def test_one_live_key_per_node_in_the_schema(store: Store) -> None:
    """The schema refuses a second live key for a node, whatever the service does."""
    with store.transaction() as tx:
        tx.insert_key(key(node="n1"))
    with pytest.raises(Conflict), store.transaction() as tx:
        tx.insert_key(key(node="n1"))
    with store.transaction() as tx:
        tx.insert_key(key(node="n1", state=KeyState.REVOKED))
        tx.insert_key(key(node="n2"))
    with store.read() as reader:
        assert len(reader.find_keys(KeyFilter(node="n1"))) == 2


def test_end_key_is_conditional(store: Store) -> None:
    """Ending a key deletes its hash and only ever changes a live key."""
    record = key()
    with store.transaction() as tx:
        tx.insert_key(record)
        assert tx.end_key(record.key_id, KeyState.REVOKED, at=T0 + 5, reason="r")
        assert not tx.end_key(record.key_id, KeyState.EXPIRED, at=T0 + 6, reason="x")
    with store.read() as reader:
        ended = reader.get_key(record.key_id)
    assert ended is not None
    assert (ended.state, ended.key_hash, ended.ended_at, ended.end_reason) == (
        KeyState.REVOKED,
        None,
        T0 + 5,
        "r",
    )


def test_record_use_counts_and_sources(store: Store) -> None:
    """Uses are counted and each source is new only once."""
    record = key()
    with store.transaction() as tx:
        tx.insert_key(record)
        assert tx.record_use(record.key_id, at=T0 + 1, source="a") == (1, True)
        assert tx.record_use(record.key_id, at=T0 + 2, source="a") == (2, False)
        assert tx.record_use(record.key_id, at=T0 + 3, source="b") == (3, True)
    with store.read() as reader:
        stored = reader.get_key(record.key_id)
    assert stored is not None
    assert (stored.uses, stored.last_used_at) == (3, T0 + 3)


def test_find_keys_and_expired_live_keys(store: Store) -> None:
    """Filters match on each column; expired_live_keys finds live keys at or past expiry."""
    a, b = key(node="a", op="x"), key(node="b", op="y")
    with store.transaction() as tx:
        tx.insert_key(a)
        tx.insert_key(b)
        assert [k.key_id for k in tx.expired_live_keys(T0 + 3599)] == []
        assert {k.key_id for k in tx.expired_live_keys(T0 + 3600)} == {a.key_id, b.key_id}
    with store.read() as reader:
        assert [k.key_id for k in reader.find_keys(KeyFilter(operation_id="y"))] == [b.key_id]
        assert len(reader.find_keys(KeyFilter(cluster="c", state=KeyState.LIVE))) == 2
        assert reader.find_keys(KeyFilter(instance="i-00000000000000009")) == []


def test_audit_append_head_and_filters(store: Store) -> None:
    """Audit records and the head round-trip exactly; filters and limit select the right records."""
    signer = AuditSigner.generate()
    for i, kind in enumerate([EventType.ISSUED, EventType.USED, EventType.REVOKED]):
        append(
            store,
            signer,
            AuditEvent(
                at=T0 + i, event=kind, key_id="aaaaaaaaaaaaaaaa", node=f"n{i % 2}", detail={"i": i, "f": 0.1}
            ),
        )
    with store.read() as reader:
        records = list(reader.iter_audit())
        head = reader.audit_head()
        assert [r.seq for r in reader.audit_records(AuditFilter(node="n0"))] == [1, 3]
        assert [r.seq for r in reader.audit_records(AuditFilter(limit=1))] == [3]
        assert [r.seq for r in reader.audit_records(AuditFilter(event=EventType.USED))] == [2]
        assert [r.seq for r in reader.audit_records(AuditFilter(since=T0 + 1, until=T0 + 2))] == [2]
    assert head is not None
    assert head.seq == 3
    report = auditchain.verify_chain(records, head, {signer.signer_id: signer.public_key})
    assert report.ok
    assert records[0].event.detail == {"i": 0, "f": 0.1}


def test_concurrent_appends_stay_a_chain(store: Store) -> None:
    """Appends from many threads serialize into one unbroken chain."""
    signer = AuditSigner.generate()

    def work(i: int) -> None:
        for j in range(5):
            append(store, signer, AuditEvent(at=T0, event=EventType.USED, detail={"t": i, "j": j}))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.read() as reader:
        report = auditchain.verify_chain(
            list(reader.iter_audit()), reader.audit_head(), {signer.signer_id: signer.public_key}
        )
    assert report.ok
    assert report.records == 30


def test_migrate_is_idempotent_and_ping_works(store: Store) -> None:
    """Migrating an up-to-date store changes nothing; ping succeeds."""
    version = store.migrate()
    assert version >= 1
    assert store.migrate() == version
    store.ping()


def test_sqlite_file_modes(tmp_path: Path) -> None:
    """The SQLite database and its WAL are created 0600 in a directory created 0700."""
    store = open_store(f"sqlite:///{tmp_path}/new/dir/keysvc.db")
    try:
        assert (tmp_path / "new" / "dir").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "new" / "dir" / "keysvc.db").stat().st_mode & 0o777 == 0o600
        assert store.migrate() >= 1
        with store.transaction() as tx:
            tx.insert_key(key())
        for name in ("keysvc.db-wal", "keysvc.db-shm"):
            assert (tmp_path / "new" / "dir" / name).stat().st_mode & 0o777 == 0o600
    finally:
        store.close()


def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    """A database migrated by a newer keysvc is refused rather than misread."""
    path = tmp_path / "keysvc.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'future', 'now')")
    conn.close()
    with pytest.raises(MigrationError, match="newer"):
        open_store(f"sqlite:///{path}")


def test_sqlite_unreachable_is_store_unavailable(tmp_path: Path) -> None:
    """A database that cannot be created, or has vanished, is reported as unavailable."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable):
        SqliteStore(blocker / "sub" / "keysvc.db")
    store = open_store(f"sqlite:///{tmp_path}/gone.db")
    (tmp_path / "gone.db").unlink()
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.close()


def test_open_store_urls(tmp_path: Path) -> None:
    """Only sqlite:// and postgresql:// URLs are accepted; a bare sqlite URL is an error."""
    with pytest.raises(ConfigError):
        open_store("mysql://x")
    with pytest.raises(StoreError):
        open_store("sqlite:///")


def test_unbound_instance_round_trips_as_none(store: Store) -> None:
    """A key without an instance reads back with None, and an instance filter never matches it."""
    record = replace(key(), instance=None)
    with store.transaction() as tx:
        tx.insert_key(record)
    with store.read() as reader:
        assert reader.get_key(record.key_id) == record
        assert reader.find_keys(KeyFilter(instance="i-0123456789abcdef0")) == []
        assert reader.find_keys(KeyFilter(cluster="c")) == [record]


def test_bind_instance_changes_only_a_live_unbound_key(store: Store) -> None:
    """The conditional update binds a live unbound key once; bound or ended keys are left alone."""
    unbound = replace(key(node="n1"), instance=None)
    ended = replace(key(node="n2", state=KeyState.REVOKED), instance=None)
    bound = key(node="n3")
    with store.transaction() as tx:
        for record in (unbound, ended, bound):
            tx.insert_key(record)
    with store.transaction() as tx:
        assert tx.bind_instance(unbound.key_id, "i-0fedcba9876543210") is True
        assert tx.bind_instance(unbound.key_id, "i-0123456789abcdef0") is False
        assert tx.bind_instance(ended.key_id, "i-0fedcba9876543210") is False
        assert tx.bind_instance(bound.key_id, "i-0fedcba9876543210") is False
        assert tx.bind_instance("aaaaaaaaaaaaaaaa", "i-0fedcba9876543210") is False
    with store.read() as reader:
        assert reader.get_key(unbound.key_id) == replace(unbound, instance="i-0fedcba9876543210")
        assert reader.get_key(ended.key_id) == ended
        assert reader.get_key(bound.key_id) == bound
        assert reader.find_keys(KeyFilter(instance="i-0fedcba9876543210")) == [
            replace(unbound, instance="i-0fedcba9876543210")
        ]


def test_exchange_is_conditional_on_the_first_nonce(store: Store) -> None:
    """The first exchange fixes the nonce; the same nonce may replace the session, another changes nothing."""
    record = key()
    with store.transaction() as tx:
        tx.insert_key(record)
    first, second = b"n" * 32, b"m" * 32
    with store.transaction() as tx:
        assert tx.exchange(record.key_id, nonce_hash=first, session_hash=b"s" * 32, at=T0 + 1)
    with store.transaction() as tx:
        assert not tx.exchange(record.key_id, nonce_hash=second, session_hash=b"x" * 32, at=T0 + 2)
        assert tx.exchange(record.key_id, nonce_hash=first, session_hash=b"t" * 32, at=T0 + 3)
        assert not tx.exchange("aaaaaaaaaaaaaaaa", nonce_hash=first, session_hash=b"t" * 32, at=T0 + 3)
    with store.read() as reader:
        stored = reader.get_key(record.key_id)
    assert stored is not None
    assert (stored.nonce_hash, stored.session_hash, stored.exchanged_at, stored.exchanges) == (
        first,
        b"t" * 32,
        T0 + 3,
        2,
    )


def test_replays_count_filter_and_end_key_drops_the_session(store: Store) -> None:
    """record_replay counts, find_keys filters on replays, and ending a key deletes its session hash."""
    replayed, quiet = key(node="n1"), key(node="n2")
    with store.transaction() as tx:
        tx.insert_key(replayed)
        tx.insert_key(quiet)
        tx.exchange(replayed.key_id, nonce_hash=b"n" * 32, session_hash=b"s" * 32, at=T0 + 1)
        assert tx.record_replay(replayed.key_id, at=T0 + 2) == 1
        assert tx.record_replay(replayed.key_id, at=T0 + 3) == 2
        assert tx.record_replay("aaaaaaaaaaaaaaaa", at=T0 + 3) == 0
    with store.read() as reader:
        assert [k.key_id for k in reader.find_keys(KeyFilter(replayed=True))] == [replayed.key_id]
        assert [k.key_id for k in reader.find_keys(KeyFilter(replayed=False))] == [quiet.key_id]
        assert reader.get_key(replayed.key_id).last_replay_at == T0 + 3  # type: ignore[union-attr]
    with store.transaction() as tx:
        assert tx.end_key(replayed.key_id, KeyState.REVOKED, at=T0 + 4, reason="terminated")
    with store.read() as reader:
        ended = reader.get_key(replayed.key_id)
    assert ended is not None
    assert ended.session_hash is None
    assert ended.nonce_hash == b"n" * 32
