"""Wiring: turn :class:`~keysvc.config.Settings` into ready services, with their adapters plugged in.

This is the one place that chooses adapters: it opens the store, loads the audit signing key and
builds the URL signer; entry points (the CLI, ``keysvc serve``, the event consumer) call
:func:`open_service` and :func:`open_ingest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keysvc.aws.identity import TrustDirectory
from keysvc.config import Settings
from keysvc.core.clock import Clock, SystemClock
from keysvc.core.identity import IdentityPolicy
from keysvc.errors import ConfigError
from keysvc.files import audit_signing
from keysvc.gcs.url_signing import GcsUrlSigner
from keysvc.service.ingest import GrantPolicy, IngestService
from keysvc.service.keys import KeyService
from keysvc.service.ports import UrlSigner
from keysvc.store import open_store


def load_settings(config: str | None = None, state_dir: str | None = None) -> Settings:
    """Read settings from ``--config`` (else ``$KEYSVC_CONFIG``) and the environment; ``--state-dir`` wins."""
    settings = Settings.load(Path(config) if config else None)
    if state_dir:
        settings = settings.with_env({"KEYSVC_STATE_DIR": state_dir})
    return settings


def open_service(settings: Settings, *, clock: Clock | None = None) -> KeyService:
    """Open and migrate the store, load or generate the audit signing key, and build the key service."""
    store = open_store(settings.state.database)
    try:
        signer = audit_signing.load_or_create(settings.state.audit_signing_key)
        return KeyService(
            store,
            signer,
            clock if clock is not None else SystemClock(),
            regions=settings.regions,
            key_ttl_seconds=settings.state.key_ttl_seconds,
        )
    except BaseException:
        store.close()
        raise


def url_signer(settings: Settings) -> GcsUrlSigner:
    """The configured V4 URL signer (it loads its key lazily, on first use or ``check_ready``)."""
    return GcsUrlSigner(settings.gcs.service_account_file, settings.gcs.endpoint)


def open_ingest(
    settings: Settings, keys: KeyService, *, signer: UrlSigner | None = None, clock: Clock | None = None
) -> IngestService:
    """Build the ingest service over the key service's store and audit trail."""
    server = settings.server
    return IngestService(
        keys.store,
        keys.audit,
        clock if clock is not None else SystemClock(),
        signer=signer if signer is not None else url_signer(settings),
        regions=settings.regions,
        policy=GrantPolicy(
            url_ttl_seconds=server.url_ttl_seconds,
            max_chunk_bytes=server.max_chunk_bytes,
            max_objects_per_grant=server.max_objects_per_grant,
            revoke_on_replay=server.revoke_on_replay,
        ),
        **identity_parts(settings),
    )


def identity_parts(settings: Settings) -> dict[str, Any]:
    """The identity-document verifier and policy of the ingest service, from ``[identity]``."""
    conf = settings.identity
    if conf.require and conf.trust_dir == Path():
        raise ConfigError("identity.require needs identity.trust_dir (AWS's certificates, one <region>.pem)")
    accounts = frozenset(a.strip() for a in conf.allowed_accounts.split(",") if a.strip())
    return {
        "identity": TrustDirectory(conf.trust_dir) if conf.trust_dir != Path() else None,
        "identity_policy": IdentityPolicy(
            require=conf.require, allowed_accounts=accounts, skew_seconds=conf.skew_seconds
        ),
    }
