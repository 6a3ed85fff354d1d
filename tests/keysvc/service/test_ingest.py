"""Unit tests of keysvc.service.ingest: where the key is checked, use counting, and the grant policy."""

from __future__ import annotations

import dataclasses

import pytest

from keysvc.core.clock import ManualClock
from keysvc.core.models import EventType, KeyRecord, KeyState
from keysvc.errors import ConfigError, InvalidInput, InvalidObjectName, Refused
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.ingest import GrantPolicy, IngestService
from keysvc.service.keys import KeyService
from keysvc.service.ports import Store
from keysvc.wire import keyformat
from keysvc.wire.results import Reason
from tests.keysvc.conftest import REGIONS, RecordingSigner
from tests.keysvc.service.builders import T0, add, refusal_reason, scope


def test_key_valid_at_3599_and_refused_at_3600(
    service: KeyService, clock: ManualClock, ingest: IngestService
) -> None:
    """The TTL boundary: valid one second before expiry, refused as expired at it."""
    issued = service.add_node(add(), actor="p")
    clock.set(T0 + 3599)
    assert ingest.authenticate(issued.key, wanted=scope(), source="10.0.0.1").key_id == issued.record.key_id
    clock.set(T0 + 3600)
    assert refusal_reason(ingest, issued.key) == Reason.EXPIRED
    assert service.get_key(issued.record.key_id).state is KeyState.EXPIRED


def test_expiry_counts_from_addnode_start_not_issue_time(
    service: KeyService, clock: ManualClock, ingest: IngestService
) -> None:
    """A key minted 100 s after its AddNode began still expires 3600 s after the start."""
    clock.set(T0 + 100)
    issued = service.add_node(add(started=T0), actor="p")
    assert issued.record.expires_at == T0 + 3600
    clock.set(T0 + 3600)
    assert refusal_reason(ingest, issued.key) == Reason.EXPIRED


def test_shortened_ttl_is_honoured(service_store: Store, signer: AuditSigner, clock: ManualClock) -> None:
    """Configuration may shorten the TTL; the boundary moves with it."""
    short = KeyService(service_store, signer, clock, regions=REGIONS, key_ttl_seconds=60)
    short_ingest = IngestService(short.store, short.audit, clock, signer=RecordingSigner(), regions=REGIONS)
    issued = short.add_node(add(), actor="p")
    clock.set(T0 + 59)
    short_ingest.authenticate(issued.key, wanted=scope(), source="a")
    clock.set(T0 + 60)
    assert refusal_reason(short_ingest, issued.key) == Reason.EXPIRED


def test_every_refusal_reason(service: KeyService, clock: ManualClock, ingest: IngestService) -> None:
    """Malformed, bad checksum, unknown, hash mismatch, revoked, expired and scope failures are told apart."""
    issued = service.add_node(add(), actor="p")
    key = issued.key
    assert refusal_reason(ingest, "not-a-key") == Reason.MALFORMED
    assert refusal_reason(ingest, key[:-1]) == Reason.MALFORMED
    flipped = key[:-1] + ("a" if key[-1] != "a" else "b")
    assert refusal_reason(ingest, flipped) == Reason.BAD_CHECKSUM
    assert refusal_reason(ingest, keyformat.mint().key) == Reason.UNKNOWN
    forged = keyformat.mint(issued.record.key_id).key
    assert refusal_reason(ingest, forged) == Reason.HASH_MISMATCH
    assert refusal_reason(ingest, key, scope(node="node-2")) == Reason.OUT_OF_SCOPE
    assert refusal_reason(ingest, key, scope(cluster="dev")) == Reason.OUT_OF_SCOPE
    assert refusal_reason(ingest, key, scope(region="us")) == Reason.WRONG_REGION
    wrong_action = dataclasses.replace(scope(), action="read")
    assert refusal_reason(ingest, key, wrong_action) == Reason.WRONG_ACTION
    other = service.add_node(add(node="node-9", op="op-9"), actor="p")
    service.revoke(key_id=other.record.key_id, reason="test", actor="op")
    assert refusal_reason(ingest, other.key, scope(node="node-9")) == Reason.REVOKED
    clock.set(T0 + 3600)
    assert refusal_reason(ingest, key) == Reason.EXPIRED
    service.sweep()
    assert refusal_reason(ingest, key) == Reason.EXPIRED
    refused = [r.event for r in service.audit.records(event=EventType.REFUSED)]
    assert [e.reason for e in refused] == [
        "malformed",
        "malformed",
        "bad_checksum",
        "unknown",
        "hash_mismatch",
        "out_of_scope",
        "out_of_scope",
        "wrong_region",
        "wrong_action",
        "revoked",
        "expired",
        "expired",
    ]
    assert refused[0].key_id is None
    assert refused[4].key_id == issued.record.key_id
    assert refused[4].node == "node-1"
    assert all(e.source == "10.0.0.1" for e in refused)


def test_use_counts_and_first_use_per_source(
    service: KeyService, clock: ManualClock, ingest: IngestService
) -> None:
    """Every use is counted; only the first use from each source address is audited."""
    issued = service.add_node(add(), actor="p")
    for source in ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1"]:
        clock.advance(1)
        record = ingest.authenticate(issued.key, wanted=scope(), source=source)
    assert record.uses == 4
    stored = service.get_key(issued.record.key_id)
    assert (stored.uses, stored.last_used_at) == (4, T0 + 4)
    used = service.audit.records(event=EventType.USED)
    assert [(r.event.source, r.event.detail["uses"]) for r in used] == [("10.0.0.1", 1), ("10.0.0.2", 3)]


NAME = "var-log-cloud-init.log-0a1b2c3d/g000001/0000000000000000-0000000000000100.gz"


def _authenticated(service: KeyService, ingest: IngestService) -> tuple[str, KeyRecord]:
    issued = service.add_node(add(), actor="p")
    return issued.key, ingest.authenticate(issued.key, wanted=scope(), source="10.0.0.1")


def test_grant_signs_each_name_under_the_nodes_own_prefix(
    service: KeyService, clock: ManualClock, signer: AuditSigner
) -> None:
    """One create-only, size-bounded URL per name, under <prefix>/<cluster>/<node>/ in the region's bucket."""
    urls = RecordingSigner()
    ingest = IngestService(service.store, service.audit, clock, signer=urls, regions=REGIONS)
    _, record = _authenticated(service, ingest)
    second = NAME.replace("g000001", "g000002")
    answer = ingest.grant(record, [NAME, second], source="10.0.0.1")
    assert answer.bucket == "nodelogs-eu"
    assert [u.object for u in answer.uploads] == [
        f"nodelogs/prod/node-1/{NAME}",
        f"nodelogs/prod/node-1/{second}",
    ]
    assert [s["object"] for s in urls.signed] == [u.object for u in answer.uploads]
    assert all(s["bucket"] == "nodelogs-eu" for s in urls.signed)
    headers = answer.uploads[0].headers
    assert headers["x-goog-if-generation-match"] == "0"
    assert headers["x-goog-content-length-range"] == f"0,{ingest.policy.max_chunk_bytes}"
    assert all(u.expires_at <= record.expires_at for u in answer.uploads)


def test_grant_urls_never_outlive_the_key(service: KeyService, clock: ManualClock) -> None:
    """Ten seconds before expiry, the URL lives ten seconds, not the configured 300."""
    urls = RecordingSigner()
    ingest = IngestService(service.store, service.audit, clock, signer=urls, regions=REGIONS)
    _, record = _authenticated(service, ingest)
    clock.set(record.expires_at - 10)
    answer = ingest.grant(record, [NAME], source="10.0.0.1")
    assert answer.uploads[0].expires_at == record.expires_at
    assert urls.signed[0]["expires_in"] == 10


def test_a_bad_name_is_audited_and_nothing_is_signed(service: KeyService, clock: ManualClock) -> None:
    """A hostile object name is refused as bad_object_name in the audit log, and no URL is signed at all."""
    urls = RecordingSigner()
    ingest = IngestService(service.store, service.audit, clock, signer=urls, regions=REGIONS)
    _, record = _authenticated(service, ingest)
    for bad in ("../../other-node/x.gz", NAME + "/..", "a/g000001/0-1.gz\x00"):
        with pytest.raises(InvalidObjectName):
            ingest.grant(record, [NAME, bad], source="10.0.0.9")
    with pytest.raises(InvalidObjectName):
        ingest.grant(record, [NAME, NAME], source="10.0.0.9")
    assert urls.signed == []
    refusals = service.audit.records(event=EventType.REFUSED)
    assert [r.event.reason for r in refusals] == [Reason.BAD_OBJECT_NAME] * 4
    assert all(r.event.key_id == record.key_id for r in refusals)


def test_too_many_names_are_refused_before_any_work(service: KeyService, clock: ManualClock) -> None:
    """check_batch refuses more names than one grant may carry, with the limit in the message."""
    ingest = IngestService(
        service.store, service.audit, clock, signer=RecordingSigner(), regions=REGIONS,
        policy=GrantPolicy(max_objects_per_grant=2),
    )  # fmt: skip
    ingest.check_batch(2)
    with pytest.raises(InvalidInput, match="at most 2 objects"):
        ingest.check_batch(3)


def test_no_whole_second_left_is_refused_as_expired(service: KeyService, clock: ManualClock) -> None:
    """When the key expires before a URL signed this second could live one second: refused, and audited."""
    urls = RecordingSigner()
    ingest = IngestService(service.store, service.audit, clock, signer=urls, regions=REGIONS)
    _, record = _authenticated(service, ingest)
    clock.set(record.expires_at - 0.5)
    assert ingest.grant(record, [NAME], source="10.0.0.1").uploads[0].expires_at == record.expires_at
    signed = len(urls.signed)
    clock.set(record.expires_at)
    with pytest.raises(Refused) as caught:
        ingest.grant(record, [NAME], source="10.0.0.1")
    assert caught.value.reason == Reason.EXPIRED
    assert len(urls.signed) == signed
    assert service.audit.records(event=EventType.REFUSED)[-1].event.reason == Reason.EXPIRED


def test_a_region_dropped_from_the_configuration_is_a_config_error(
    service: KeyService, clock: ManualClock
) -> None:
    """A key whose region is no longer configured gets no URL for any other bucket."""
    ingest = IngestService(service.store, service.audit, clock, signer=RecordingSigner(), regions=REGIONS)
    _, record = _authenticated(service, ingest)
    shrunk = IngestService(
        service.store, service.audit, clock, signer=RecordingSigner(), regions={"us": REGIONS["us"]}
    )
    with pytest.raises(ConfigError, match="no longer configured"):
        shrunk.grant(record, [NAME], source="10.0.0.1")
