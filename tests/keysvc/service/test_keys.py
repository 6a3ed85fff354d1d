"""Unit tests of keysvc.service.keys: AddNode, retries, binding, revocation, expiry, listing."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from keysvc.core.clock import ManualClock
from keysvc.core.models import EventType, KeyState
from keysvc.errors import ConfigError, Conflict, InvalidInput, NotFound
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService
from keysvc.service.ports import Store
from keysvc.wire import keyformat
from keysvc.wire.results import Reason
from tests.keysvc.conftest import REGIONS
from tests.keysvc.service.builders import INSTANCE, T0, add, events, refusal_reason


def test_add_node_mints_a_key_stored_only_as_hash(service: KeyService) -> None:
    """AddNode returns a well-formed key once; the store keeps its hash and an issued record."""
    issued = service.add_node(add(), actor="provisioner")
    assert keyformat.parse(issued.key).__class__.__name__ == "Success"
    record = service.get_key(issued.record.key_id)
    assert record.key_hash == keyformat.key_hash(issued.key)
    assert record.state is KeyState.LIVE
    assert record.expires_at == T0 + 3600
    assert issued.key not in repr(issued)
    assert events(service) == [(EventType.ISSUED, None)]
    audit = service.audit.records()[0]
    assert audit.event.actor == "provisioner"
    assert audit.event.detail["operation_id"] == "op-1"


def test_ttl_cannot_be_lengthened(service_store: Store, signer: AuditSigner, clock: ManualClock) -> None:
    """A TTL above 3600 s is a configuration error."""
    with pytest.raises(ConfigError):
        KeyService(service_store, signer, clock, regions=REGIONS, key_ttl_seconds=3601)


def test_stale_or_future_addnode_is_refused(service: KeyService, clock: ManualClock) -> None:
    """An AddNode whose key would already be expired, or that starts far in the future, is invalid."""
    clock.set(T0 + 3600)
    with pytest.raises(InvalidInput, match="too long ago"):
        service.add_node(add(started=T0), actor="p")
    with pytest.raises(InvalidInput, match="future"):
        service.add_node(add(started=T0 + 3600 + 301), actor="p")
    assert service.add_node(add(started=T0 + 3600 + 300), actor="p").record.expires_at == T0 + 7200 + 300


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cluster", "Prod"),
        ("cluster", "a" * 64),
        ("node", "node_1"),
        ("instance", "i-123"),
        ("region", "EU"),
        ("operation_id", ""),
        ("operation_id", "op 1"),
    ],
)
def test_invalid_ids_are_refused(service: KeyService, field: str, value: str) -> None:
    """Every id of an AddNode is validated strictly and the error names the field."""
    changes: dict[str, object] = {field: value}
    request = dataclasses.replace(add(), **changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=field):
        service.add_node(request, actor="p")
    assert service.list_keys() == []
    assert service.audit.records() == []


def test_retry_with_same_operation_supersedes(service: KeyService, ingest: IngestService) -> None:
    """A retried AddNode re-mints and revokes the earlier key: never two live keys for a node."""
    first = service.add_node(add(), actor="p")
    second = service.add_node(add(), actor="p")
    assert second.key != first.key
    assert second.superseded == (first.record.key_id,)
    live = service.list_keys(state=KeyState.LIVE)
    assert [k.key_id for k in live] == [second.record.key_id]
    old = service.get_key(first.record.key_id)
    assert (old.state, old.end_reason, old.key_hash) == (KeyState.REVOKED, "superseded", None)
    assert refusal_reason(ingest, first.key) == Reason.REVOKED
    assert events(service)[:3] == [
        (EventType.ISSUED, None),
        (EventType.REVOKED, "superseded"),
        (EventType.ISSUED, None),
    ]
    assert service.audit.records()[2].event.detail["retry"] is True


def test_same_operation_with_other_parameters_conflicts(service: KeyService) -> None:
    """Reusing an operation id for a different AddNode is a conflict and changes nothing."""
    first = service.add_node(add(), actor="p")
    with pytest.raises(Conflict):
        service.add_node(add(node="node-2"), actor="p")
    with pytest.raises(Conflict):
        service.add_node(add(started=T0 + 1), actor="p")
    assert [k.key_id for k in service.list_keys()] == [first.record.key_id]
    assert len(service.audit.records()) == 1


def test_new_addnode_for_node_revokes_old_key(service: KeyService, clock: ManualClock) -> None:
    """A new AddNode (new operation) for a node with a live key revokes the old key."""
    first = service.add_node(add(op="op-1"), actor="p")
    clock.advance(10)
    second = service.add_node(add(op="op-2", started=T0 + 10, instance="i-0123456789abcdef1"), actor="p")
    assert second.superseded == (first.record.key_id,)
    assert service.get_key(first.record.key_id).state is KeyState.REVOKED
    other = service.add_node(add(node="node-2", op="op-3", started=T0 + 10), actor="p")
    assert other.superseded == ()


def test_concurrent_addnodes_leave_one_live_key(service: KeyService) -> None:
    """Many threads minting for the same node still leave exactly one live key."""
    errors: list[BaseException] = []

    def mint(i: int) -> None:
        try:
            service.add_node(add(op=f"op-{i}"), actor="p")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=mint, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(service.list_keys(state=KeyState.LIVE)) == 1
    assert len(service.list_keys()) == 8
    service.audit.verify()


def test_revoke_by_each_selector(service: KeyService) -> None:
    """Revocation by key id, node, instance and cluster each revokes exactly the matching live keys."""
    a = service.add_node(add(node="a", op="1", instance="i-00000000000000001"), actor="p")
    b = service.add_node(add(node="b", op="2", instance="i-00000000000000002"), actor="p")
    c = service.add_node(add(node="c", op="3", instance="i-00000000000000003"), actor="p")
    d = service.add_node(add(cluster="dev", node="d", op="4", instance="i-00000000000000004"), actor="p")
    assert service.revoke(key_id=a.record.key_id, reason="by id", actor="op") == [a.record.key_id]
    assert service.revoke(node="b", reason="by node", actor="op") == [b.record.key_id]
    assert service.revoke(instance="i-00000000000000003", reason="terminated", actor="events") == [
        c.record.key_id
    ]
    assert service.revoke(cluster="dev", reason="cluster gone", actor="op") == [d.record.key_id]
    revoked = service.audit.records(event=EventType.REVOKED)
    assert [(r.event.key_id, r.event.reason, r.event.actor) for r in revoked] == [
        (a.record.key_id, "by id", "op"),
        (b.record.key_id, "by node", "op"),
        (c.record.key_id, "terminated", "events"),
        (d.record.key_id, "cluster gone", "op"),
    ]
    assert all(k.key_hash is None and k.state is KeyState.REVOKED for k in service.list_keys())


def test_revoke_node_of_one_cluster(service: KeyService) -> None:
    """Cluster and node together revoke that node's key in that cluster only, not its namesake elsewhere."""
    prod = service.add_node(add(cluster="prod", node="n", op="1", instance="i-00000000000000001"), actor="p")
    dev = service.add_node(add(cluster="dev", node="n", op="2", instance="i-00000000000000002"), actor="p")
    assert service.revoke(cluster="prod", node="n", reason="r", actor="op") == [prod.record.key_id]
    assert service.get_key(dev.record.key_id).state is KeyState.LIVE


def test_revoke_is_idempotent(service: KeyService) -> None:
    """Revoking again revokes nothing and writes no second record."""
    issued = service.add_node(add(), actor="p")
    assert service.revoke(key_id=issued.record.key_id, reason="r", actor="op") == [issued.record.key_id]
    assert service.revoke(key_id=issued.record.key_id, reason="r", actor="op") == []
    assert service.revoke(cluster="prod", reason="r", actor="op") == []
    assert len(service.audit.records(event=EventType.REVOKED)) == 1


def test_revoke_needs_exactly_one_selector(service: KeyService) -> None:
    """No selector, or two, is invalid input; an unknown key id is not found."""
    with pytest.raises(InvalidInput):
        service.revoke(reason="r", actor="op")
    with pytest.raises(InvalidInput):
        service.revoke(cluster="prod", instance="i-00000000000000001", reason="r", actor="op")
    with pytest.raises(InvalidInput):
        service.revoke(key_id="aaaaaaaaaaaaaaaa", node="n", reason="r", actor="op")
    with pytest.raises(NotFound):
        service.revoke(key_id="aaaaaaaaaaaaaaaa", reason="r", actor="op")
    with pytest.raises(InvalidInput):
        service.revoke(key_id="AAAA", reason="r", actor="op")
    with pytest.raises(InvalidInput):
        service.revoke(node="n", reason="", actor="op")


def test_revoke_reason_may_not_carry_a_key(service: KeyService) -> None:
    """A reason shaped like a key is refused so a secret never enters the audit."""
    issued = service.add_node(add(), actor="p")
    with pytest.raises(InvalidInput):
        service.revoke(key_id=issued.record.key_id, reason=f"leaked {issued.key}", actor="op")


def test_sweep_expires_once(service: KeyService, clock: ManualClock) -> None:
    """The sweeper expires keys past expiry, deletes hashes and audits each exactly once."""
    a = service.add_node(add(node="a", op="1"), actor="p")
    clock.advance(100)
    b = service.add_node(add(node="b", op="2", started=T0 + 100), actor="p")
    clock.set(T0 + 3600)
    assert service.sweep() == [a.record.key_id]
    assert service.sweep() == []
    clock.set(T0 + 3700)
    assert service.sweep() == [b.record.key_id]
    expired = service.audit.records(event=EventType.EXPIRED)
    assert [r.event.key_id for r in expired] == [a.record.key_id, b.record.key_id]
    assert all(k.state is KeyState.EXPIRED and k.key_hash is None for k in service.list_keys())


def test_concurrent_sweeps_do_not_double_audit(service: KeyService, clock: ManualClock) -> None:
    """Several sweepers at once expire each key once in total."""
    for i in range(5):
        service.add_node(add(node=f"n{i}", op=f"op{i}"), actor="p")
    clock.set(T0 + 4000)
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(service.sweep())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(k for r in results for k in r) == sorted(k.key_id for k in service.list_keys())
    assert len(service.audit.records(event=EventType.EXPIRED)) == 5


def test_list_reports_expiry_before_sweep(service: KeyService, clock: ManualClock) -> None:
    """list_keys and get_key call a key past expiry EXPIRED even before the sweeper ran."""
    issued = service.add_node(add(), actor="p")
    assert [k.key_id for k in service.list_keys(state=KeyState.LIVE)] == [issued.record.key_id]
    clock.set(T0 + 3600)
    assert service.list_keys(state=KeyState.LIVE) == []
    assert [k.key_id for k in service.list_keys(state=KeyState.EXPIRED)] == [issued.record.key_id]
    assert service.get_key(issued.record.key_id).state is KeyState.EXPIRED


def test_list_filters(service: KeyService) -> None:
    """list_keys filters by cluster, node and state."""
    service.add_node(add(node="a", op="1"), actor="p")
    b = service.add_node(add(node="b", op="2"), actor="p")
    service.add_node(add(cluster="dev", node="a", op="3"), actor="p")
    service.revoke(key_id=b.record.key_id, reason="r", actor="op")
    assert len(service.list_keys(cluster="prod")) == 2
    assert len(service.list_keys(node="a")) == 2
    assert [k.key_id for k in service.list_keys(state=KeyState.REVOKED)] == [b.record.key_id]
    with pytest.raises(NotFound):
        service.get_key("aaaaaaaaaaaaaaaa")


def test_check_ready(service: KeyService) -> None:
    """check_ready passes on an open store."""
    service.check_ready()


OTHER_INSTANCE = "i-0fedcba9876543210"


def test_add_node_without_instance_then_bind(service: KeyService, clock: ManualClock) -> None:
    """A key minted without an instance reads back unbound; binding it is audited once as ``bound``."""
    issued = service.add_node(add(instance=None), actor="provisioner")
    assert issued.record.instance is None
    assert service.get_key(issued.record.key_id).instance is None
    assert service.audit.records()[0].event.instance is None
    assert service.revoke(reason="terminated", actor="aws:events", instance=INSTANCE) == []
    clock.set(T0 + 30)
    bound = service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="provisioner")
    assert (bound.key_id, bound.instance, bound.state) == (issued.record.key_id, INSTANCE, KeyState.LIVE)
    assert service.get_key(issued.record.key_id).instance == INSTANCE
    [record] = service.audit.records(event=EventType.BOUND)
    assert (record.event.key_id, record.event.instance, record.event.actor, record.event.at) == (
        issued.record.key_id,
        INSTANCE,
        "provisioner",
        T0 + 30,
    )
    assert (record.event.cluster, record.event.node, record.event.region) == ("prod", "node-1", "eu")
    assert service.audit.verify().records == 2
    assert service.revoke(reason="terminated", actor="aws:events", instance=INSTANCE) == [bound.key_id]


def test_bind_same_instance_again_is_idempotent(service: KeyService) -> None:
    """Binding the instance already bound returns the key and adds no audit record."""
    issued = service.add_node(add(instance=None), actor="p")
    first = service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    again = service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    assert first == again
    assert again.key_id == issued.record.key_id
    assert events(service) == [(EventType.ISSUED, None), (EventType.BOUND, None)]


def test_bind_a_key_issued_with_its_instance_is_idempotent(service: KeyService) -> None:
    """A key that AddNode already bound accepts the same instance without a new record."""
    issued = service.add_node(add(), actor="p")
    assert service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p").key_id == (
        issued.record.key_id
    )
    assert events(service) == [(EventType.ISSUED, None)]


def test_bind_another_instance_conflicts(service: KeyService) -> None:
    """A key bound to one instance refuses another, and stays bound to the first."""
    issued = service.add_node(add(instance=None), actor="p")
    service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    with pytest.raises(Conflict):
        service.bind_instance(cluster="prod", node="node-1", instance=OTHER_INSTANCE, actor="p")
    assert service.get_key(issued.record.key_id).instance == INSTANCE
    assert len(service.audit.records(event=EventType.BOUND)) == 1


def test_bind_an_instance_held_by_another_node_conflicts(service: KeyService) -> None:
    """One instance cannot be bound to two nodes' live keys, so one termination revokes one node."""
    service.add_node(add(node="node-1", op="1", instance=INSTANCE), actor="p")
    other = service.add_node(add(node="node-2", op="2", instance=None), actor="p")
    with pytest.raises(Conflict, match="another node"):
        service.bind_instance(cluster="prod", node="node-2", instance=INSTANCE, actor="p")
    assert service.get_key(other.record.key_id).instance is None


def test_bind_without_live_key_is_not_found(service: KeyService, clock: ManualClock) -> None:
    """Binding fails with NotFound for an unknown node, a revoked key and a key past its expiry."""
    with pytest.raises(NotFound):
        service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    issued = service.add_node(add(instance=None), actor="p")
    with pytest.raises(NotFound):
        service.bind_instance(cluster="staging", node="node-1", instance=INSTANCE, actor="p")
    service.add_node(add(node="node-2", op="op-2", instance=None), actor="p")
    service.revoke(reason="gone", actor="p", key_id=issued.record.key_id)
    with pytest.raises(NotFound):
        service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    clock.set(T0 + 3600)
    with pytest.raises(NotFound):
        service.bind_instance(cluster="prod", node="node-2", instance=INSTANCE, actor="p")
    assert service.audit.records(event=EventType.BOUND) == []
    assert all(rec.instance is None for rec in service.list_keys())


def test_bind_binds_the_current_key_not_a_superseded_one(service: KeyService) -> None:
    """After a retry superseded the first key, the bind reaches the live one only."""
    first = service.add_node(add(instance=None), actor="p")
    second = service.add_node(add(instance=None), actor="p")
    bound = service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    assert bound.key_id == second.record.key_id
    assert service.get_key(first.record.key_id).instance is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("cluster", "Prod"), ("node", "-bad"), ("instance", "i-xyz"), ("instance", ""), ("actor", "")],
)
def test_bind_refuses_invalid_input(service: KeyService, field: str, value: str) -> None:
    """Malformed ids (including an empty instance) and an empty actor are refused before any write."""
    service.add_node(add(instance=None), actor="p")
    arguments = {"cluster": "prod", "node": "node-1", "instance": INSTANCE, "actor": "p", field: value}
    with pytest.raises(InvalidInput):
        service.bind_instance(**arguments)
    assert service.list_keys()[0].instance is None
    assert len(service.audit.records()) == 1


def test_retry_without_instance_compares_instances(service: KeyService) -> None:
    """Retries: None and None agree; None against an instance conflicts, either way round."""
    service.add_node(add(instance=None), actor="p")
    retried = service.add_node(add(instance=None), actor="p")
    assert retried.record.instance is None
    with pytest.raises(Conflict):
        service.add_node(add(instance=INSTANCE), actor="p")
    service.add_node(add(op="op-2", node="node-2"), actor="p")
    with pytest.raises(Conflict):
        service.add_node(add(op="op-2", node="node-2", instance=None), actor="p")


def test_retry_without_instance_after_bind_conflicts(service: KeyService) -> None:
    """Once the key is bound the node runs with it: a retry of its AddNode conflicts and revokes nothing."""
    issued = service.add_node(add(instance=None), actor="p")
    service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
    with pytest.raises(Conflict):
        service.add_node(add(instance=None), actor="p")
    assert service.get_key(issued.record.key_id).state is KeyState.LIVE


def test_concurrent_binds_audit_once(service: KeyService) -> None:
    """Eight threads binding the same instance at once leave one ``bound`` record and one bound key."""
    issued = service.add_node(add(instance=None), actor="p")
    errors: list[BaseException] = []

    def bind() -> None:
        try:
            service.bind_instance(cluster="prod", node="node-1", instance=INSTANCE, actor="p")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=bind) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.get_key(issued.record.key_id).instance == INSTANCE
    assert len(service.audit.records(event=EventType.BOUND)) == 1
