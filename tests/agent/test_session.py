"""Unit tests of agent.session: the nonce is persisted before the exchange, the session after it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.errors import StateCorrupt
from agent.preflight import read_credential
from agent.session import NONCE_FILE, SESSION_FILE, Session, stored_session
from keysvc.wire import is_nonce
from keysvc.wire.keyformat import mint as mint_key
from keysvc.wire.sessionformat import mint_session

KEY_ID = "abcdefghijklmnop"


def test_nonce_is_on_disk_before_the_exchange_and_the_session_after(tmp_path: Path) -> None:
    """The exchange sees a nonce already persisted 0600; the returned session is persisted 0600 too."""
    minted = mint_session(KEY_ID).session
    seen: list[str] = []

    def exchange(nonce: str) -> str:
        assert (tmp_path / NONCE_FILE).exists()
        assert nonce in (tmp_path / NONCE_FILE).read_text()
        seen.append(nonce)
        return minted

    session = Session(tmp_path, KEY_ID)
    assert session.bearer(exchange) == minted
    assert session.bearer(exchange) == minted
    assert len(seen) == 1
    assert is_nonce(seen[0])
    for name in (NONCE_FILE, SESSION_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert minted not in repr(session)


def test_a_restart_after_a_lost_answer_sends_the_same_nonce(tmp_path: Path) -> None:
    """A crash after the nonce was written but before the session was: the next run resends that nonce."""
    nonces: list[str] = []

    def dies(nonce: str) -> str:
        nonces.append(nonce)
        raise RuntimeError("killed before the answer was persisted")

    with pytest.raises(RuntimeError):
        Session(tmp_path, KEY_ID).bearer(dies)
    minted = mint_session(KEY_ID).session
    assert Session(tmp_path, KEY_ID).bearer(lambda nonce: nonces.append(nonce) or minted) == minted
    assert nonces[0] == nonces[1]


def test_a_restart_after_the_session_was_persisted_does_not_exchange(tmp_path: Path) -> None:
    """Once the session is on disk, a new process uses it and never exchanges again."""
    minted = mint_session(KEY_ID).session
    Session(tmp_path, KEY_ID).bearer(lambda _nonce: minted)

    def never(_nonce: str) -> str:
        raise AssertionError("exchanged twice")

    assert Session(tmp_path, KEY_ID).bearer(never) == minted


def test_files_for_another_key_are_ignored_and_damage_stops_the_agent(tmp_path: Path) -> None:
    """State of an older key is replaced; an unreadable file or a session of another key is StateCorrupt."""
    Session(tmp_path, "qrstuvwxyz234567").bearer(lambda _n: mint_session("qrstuvwxyz234567").session)
    minted = mint_session(KEY_ID).session
    assert Session(tmp_path, KEY_ID).bearer(lambda _n: minted) == minted
    (tmp_path / SESSION_FILE).write_text("{not json")
    with pytest.raises(StateCorrupt):
        Session(tmp_path, KEY_ID).bearer(lambda _n: minted)
    (tmp_path / SESSION_FILE).unlink()
    with pytest.raises(StateCorrupt):
        Session(tmp_path, KEY_ID).bearer(lambda _n: mint_session("qrstuvwxyz234567").session)


def test_check_presents_the_stored_session_and_never_exchanges(tmp_path: Path) -> None:
    """`check` reads the key, then prefers the session the agent holds; without one it uses the key."""
    minted = mint_key()
    key_file = tmp_path / "key"
    key_file.write_text(minted.key + "\n")
    key_file.chmod(0o600)
    state = tmp_path / "state"
    state.mkdir()
    assert read_credential(key_file, state_dir=state) == minted.key
    session = mint_session(minted.key_id).session
    Session(state, minted.key_id).bearer(lambda _nonce: session)
    assert read_credential(key_file, state_dir=state) == session
    assert stored_session(state, "qrstuvwxyz234567") is None
