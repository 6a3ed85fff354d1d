"""Unit tests of the exchange, once: a user-data key becomes one agent's session, and replays are refused."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from keysvc.core.clock import ManualClock
from keysvc.core.models import EventType, KeyState
from keysvc.errors import InvalidInput, KeyEnded, Refused
from keysvc.service.ingest import GrantPolicy, IngestService
from keysvc.service.keys import KeyService
from keysvc.wire import sessionformat
from keysvc.wire.results import Reason
from tests.keysvc.conftest import REGIONS, RecordingSigner
from tests.keysvc.service.builders import T0, add, events, refusal_reason

NONCE = "a" * 32
OTHER = "b" * 32


def test_exchange_mints_a_session_that_grants_and_spends_the_key(
    service: KeyService, ingest: IngestService
) -> None:
    """The first exchange returns an nls1_ session that authenticates; the raw key no longer does."""
    issued = service.add_node(add(), actor="p")
    answer = ingest.exchange(issued.key, NONCE, source="10.0.0.1")
    assert answer.session.startswith("nls1_")
    assert not answer.superseded
    assert sessionformat.parse_session(answer.session).value.key_id == issued.record.key_id  # type: ignore[union-attr]
    rec = ingest.authenticate(answer.session, wanted=None, source="10.0.0.1")
    assert rec.key_id == issued.record.key_id
    stored = service.get_key(issued.record.key_id)
    assert stored.exchanges == 1
    assert stored.session_hash == sessionformat.session_hash(answer.session)
    assert answer.session.encode() not in repr(stored).encode()
    assert refusal_reason(ingest, issued.key) == Reason.REPLAYED
    assert (EventType.EXCHANGED, None) in events(service)


def test_same_nonce_again_supersedes_the_earlier_session(service: KeyService, ingest: IngestService) -> None:
    """The same nonce again (the agent after kill -9) replaces the session, audited as superseded."""
    issued = service.add_node(add(), actor="p")
    first = ingest.exchange(issued.key, NONCE, source="10.0.0.1")
    second = ingest.exchange(issued.key, NONCE, source="10.0.0.1")
    assert second.superseded
    assert second.session != first.session
    assert refusal_reason(ingest, first.session) == Reason.HASH_MISMATCH
    assert ingest.authenticate(second.session, wanted=None, source="10.0.0.1").key_id == issued.record.key_id
    assert (EventType.EXCHANGED, "superseded") in events(service)
    assert service.get_key(issued.record.key_id).replays == 0


def test_another_nonce_is_a_loud_replay_and_the_session_keeps_working(
    service: KeyService, ingest: IngestService
) -> None:
    """Another nonce is refused uniformly, audited replayed, logged as a warning; the session stays."""
    issued = service.add_node(add(), actor="p")
    answer = ingest.exchange(issued.key, NONCE, source="10.0.0.1")
    with capture_logs() as logs, pytest.raises(Refused) as caught:
        ingest.exchange(issued.key, OTHER, source="192.0.2.7")
    assert str(caught.value) == "credential refused"
    assert not isinstance(caught.value, KeyEnded)
    warning = [e for e in logs if e["event"] == "key_replayed"]
    assert warning
    assert warning[0]["log_level"] == "warning"
    assert warning[0]["key_id"] == issued.record.key_id
    assert warning[0]["source"] == "192.0.2.7"
    assert issued.key not in repr(logs)
    replay = service.audit.records(event=EventType.REFUSED)[-1].event
    assert replay.reason == "replayed"
    assert replay.source == "192.0.2.7"
    assert replay.detail["via"] == "exchange"
    assert issued.key not in repr(replay)
    rec = service.get_key(issued.record.key_id)
    assert rec.replays == 1
    assert rec.exchanges == 1
    assert rec.state is KeyState.LIVE
    assert ingest.authenticate(answer.session, wanted=None, source="10.0.0.1").key_id == rec.key_id
    assert [r.key_id for r in service.list_keys(replayed=True)] == [rec.key_id]
    assert service.list_keys(replayed=False) == []


def test_revoke_on_replay_revokes_key_and_session(service: KeyService, clock: ManualClock) -> None:
    """With revoke_on_replay, a replay revokes the key, so the legitimate session stops too."""
    strict = IngestService(
        service.store,
        service.audit,
        clock,
        signer=RecordingSigner(),
        regions=REGIONS,
        policy=GrantPolicy(revoke_on_replay=True),
    )
    issued = service.add_node(add(), actor="p")
    answer = strict.exchange(issued.key, NONCE, source="10.0.0.1")
    assert refusal_reason(strict, issued.key) == Reason.REPLAYED
    rec = service.get_key(issued.record.key_id)
    assert rec.state is KeyState.REVOKED
    assert rec.end_reason == "replayed"
    assert rec.session_hash is None
    assert refusal_reason(strict, answer.session) == Reason.REVOKED
    assert (EventType.REVOKED, "replayed") in events(service)


def test_session_dies_with_the_key(service: KeyService, clock: ManualClock, ingest: IngestService) -> None:
    """The session is valid at 3599 s and refused at 3600 s, and refused once its key is revoked."""
    issued = service.add_node(add(), actor="p")
    answer = ingest.exchange(issued.key, NONCE, source="10.0.0.1")
    clock.set(T0 + 3599)
    ingest.authenticate(answer.session, wanted=None, source="10.0.0.1")
    clock.set(T0 + 3600)
    with pytest.raises(KeyEnded):
        ingest.authenticate(answer.session, wanted=None, source="10.0.0.1")
    other = service.add_node(add(node="node-2", op="op-2", started=T0 + 3600), actor="p")
    session = ingest.exchange(other.key, NONCE, source="10.0.0.1").session
    service.revoke(key_id=other.record.key_id, reason="terminated", actor="events")
    assert refusal_reason(ingest, session) == Reason.REVOKED
    with pytest.raises(Refused):
        ingest.exchange(other.key, NONCE, source="10.0.0.1")


def test_bad_exchanges_change_no_state(service: KeyService, ingest: IngestService) -> None:
    """A malformed nonce, a forged session or a wrong key leave the key untouched."""
    issued = service.add_node(add(), actor="p")
    before = service.get_key(issued.record.key_id)
    for nonce in ("", "A" * 32, "a" * 31, "a" * 33, "a" * 10_000):
        with pytest.raises(InvalidInput):
            ingest.exchange(issued.key, nonce, source="10.0.0.1")
    forged = sessionformat.mint_session(issued.record.key_id).session
    assert refusal_reason(ingest, forged) == Reason.HASH_MISMATCH
    with pytest.raises(Refused):
        ingest.exchange(forged, NONCE, source="10.0.0.1")
    wrong = issued.key[:-8] + ("a" if issued.key[-8] != "a" else "b") + issued.key[-7:]
    with pytest.raises(Refused):
        ingest.exchange(wrong, NONCE, source="10.0.0.1")
    after = service.get_key(issued.record.key_id)
    assert after == before
    assert after.nonce_hash is None


def test_session_format_round_trips_and_rejects_damage() -> None:
    """A minted session parses, a flipped character fails the checksum, a key never parses as one."""
    minted = sessionformat.mint_session("a" * 16)
    assert len(minted.session) == sessionformat.SESSION_LENGTH
    assert sessionformat.SESSION_PATTERN.fullmatch(minted.session)
    damaged = minted.session[:-1] + ("a" if minted.session[-1] != "a" else "b")
    assert sessionformat.parse_session(damaged).reason == Reason.BAD_CHECKSUM  # type: ignore[union-attr]
    assert sessionformat.parse_session("nlk1_" + minted.session[5:]).reason == Reason.MALFORMED  # type: ignore[union-attr]
    assert sessionformat.is_nonce(sessionformat.new_nonce())
    assert sessionformat.session_hash(minted.session) != sessionformat.nonce_hash(minted.session)
