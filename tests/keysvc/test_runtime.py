"""Wiring settings into a service: store opened and migrated, signing key generated once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from keysvc.config import Settings, StateConfig
from keysvc.core.clock import ManualClock
from keysvc.core.models import AddNode
from keysvc.errors import StateMissing
from keysvc.runtime import load_settings, open_service
from keysvc.store import open_store


def settings_for(state_dir: Path, ttl: int = 3600) -> Settings:
    """Settings whose state lives in ``state_dir``."""
    return replace(
        Settings(),
        state=StateConfig(
            database=f"sqlite:///{state_dir}/keysvc.db",
            audit_signing_key=state_dir / "audit-signing-key.pem",
            key_ttl_seconds=ttl,
        ),
    )


def test_open_service_creates_state_and_reuses_it(tmp_path: Path) -> None:
    """The first open creates the database and key; the second sees the same chain and key."""
    clock = ManualClock(1_800_000_000.0)
    settings = settings_for(tmp_path / "state", ttl=120)
    service = open_service(settings, clock=clock, create=True)
    request = AddNode("c", "n", "i-0123456789abcdef0", "local", "op", clock.now())
    issued = service.add_node(request, actor="test")
    assert issued.record.expires_at == clock.now() + 120
    keys = service.audit.public_keys()
    service.close()
    assert (tmp_path / "state" / "audit-signing-key.pem").stat().st_mode & 0o777 == 0o600
    again = open_service(settings, clock=clock)
    assert again.audit.public_keys() == keys
    assert again.audit.verify().records == 1
    again.check_ready()
    again.close()


def test_state_dir_flag_never_replaces_a_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--state-dir moves the files nobody configured, and KEYSVC_DATABASE keeps naming the database."""
    monkeypatch.delenv("KEYSVC_CONFIG", raising=False)
    monkeypatch.setenv("KEYSVC_DATABASE", "sqlite:////elsewhere/db")
    monkeypatch.setenv("KEYSVC_STATE_DIR", str(tmp_path / "env"))
    settings = load_settings(None, str(tmp_path))
    assert settings.state.database == "sqlite:////elsewhere/db"
    assert settings.state.audit_signing_key == tmp_path / "audit-signing-key.pem"
    monkeypatch.delenv("KEYSVC_DATABASE")
    assert load_settings().state.database == f"sqlite:///{tmp_path}/env/keysvc.db"
    assert load_settings(None, str(tmp_path)).state.database == f"sqlite:///{tmp_path}/keysvc.db"


def test_reads_refuse_missing_state_and_create_nothing(tmp_path: Path) -> None:
    """Without create=True, a missing database or signing key is StateMissing and no file appears."""
    settings = settings_for(tmp_path / "state")
    with pytest.raises(StateMissing, match=f"no keysvc database at {tmp_path}/state/keysvc.db"):
        open_service(settings)
    assert not (tmp_path / "state").exists()
    open_store(settings.state.database).close()
    with pytest.raises(StateMissing, match="no audit signing key at"):
        open_service(settings)
    assert not settings.state.audit_signing_key.exists()
