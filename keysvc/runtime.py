"""Wiring: turn :class:`~keysvc.config.Settings` into a ready :class:`~keysvc.service.KeyService`.

This is the one place that opens the store and loads the audit signing key; entry points (the CLI,
``keysvc serve``, the event consumer) call :func:`open_service`.
"""

from __future__ import annotations

from pathlib import Path

from keysvc import audit_signing
from keysvc.clock import Clock, SystemClock
from keysvc.config import Settings
from keysvc.service import KeyService
from keysvc.store import open_store


def load_settings(config: str | None = None, state_dir: str | None = None) -> Settings:
    """Read settings from ``--config`` (else ``$KEYSVC_CONFIG``) and the environment; ``--state-dir`` wins."""
    settings = Settings.load(Path(config) if config else None)
    if state_dir:
        settings = settings.with_env({"KEYSVC_STATE_DIR": state_dir})
    return settings


def open_service(settings: Settings, *, clock: Clock | None = None) -> KeyService:
    """Open and migrate the store, load or generate the audit signing key, and build the service."""
    store = open_store(settings.state.database)
    try:
        signer = audit_signing.load_or_create(settings.state.audit_signing_key)
        return KeyService(
            store,
            signer,
            clock if clock is not None else SystemClock(),
            key_ttl_seconds=settings.state.key_ttl_seconds,
        )
    except BaseException:
        store.close()
        raise
