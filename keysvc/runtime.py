"""Wiring: turn :class:`~keysvc.config.Settings` into ready services, with their adapters plugged in.

This is the one place that chooses adapters: it opens the store, loads the audit signing key and
builds the URL signer; entry points (the CLI, ``keysvc serve``, the event consumer) call
:func:`open_service` and :func:`open_ingest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keysvc.aws.identity import TrustDirectory
from keysvc.config import Settings
from keysvc.core.clock import Clock, SystemClock
from keysvc.core.identity import IdentityPolicy
from keysvc.errors import ConfigError
from keysvc.files import audit_signing
from keysvc.gcs.iam_signing import IamClient, IamUrlSigner
from keysvc.gcs.url_signing import GcsUrlSigner
from keysvc.service.ingest import GrantPolicy, IngestService
from keysvc.service.keys import KeyService
from keysvc.service.ports import KeyObserver, UrlSigner
from keysvc.store import open_store


def load_settings(
    config: str | None = None, state_dir: str | None = None, flags: Mapping[str, Any] | None = None
) -> Settings:
    """Resolve settings: ``flags`` (``--state-dir`` is ``state.dir``), environment, file, defaults."""
    merged = dict(flags or {})
    if state_dir:
        merged["state.dir"] = Path(state_dir)
    return Settings.load(Path(config) if config else None, flags=merged)


def open_service(
    settings: Settings,
    *,
    clock: Clock | None = None,
    create: bool = False,
    observer: KeyObserver | None = None,
) -> KeyService:
    """Open the store and the audit signing key, and build the key service.

    Only ``create=True`` (``serve``, ``db migrate``, ``keys issue``) may create a database or a signing
    key; every other caller gets :class:`~keysvc.errors.StateMissing` naming what does not exist.
    """
    store = open_store(settings.state.database, create=create)
    try:
        key_path = settings.state.audit_signing_key
        signer = audit_signing.load_or_create(key_path) if create else audit_signing.load(key_path)
        return KeyService(
            store,
            signer,
            clock if clock is not None else SystemClock(),
            regions=settings.regions,
            key_ttl_seconds=settings.state.key_ttl_seconds,
            observer=observer,
        )
    except BaseException:
        store.close()
        raise


def url_signer(settings: Settings) -> UrlSigner:
    """The configured V4 URL signer: a key file (loaded lazily), or IAM signBlob with no key file."""
    gcs = settings.gcs
    if gcs.signer == "iam":
        client = IamClient(
            email=gcs.service_account_email,
            metadata_endpoint=gcs.metadata_endpoint,
            iam_endpoint=gcs.iam_endpoint,
        )
        return IamUrlSigner(client, gcs.endpoint)
    return GcsUrlSigner(gcs.service_account_file, gcs.endpoint)


def open_ingest(
    settings: Settings, keys: KeyService, *, signer: UrlSigner | None = None, clock: Clock | None = None
) -> IngestService:
    """Build the ingest service over the key service's store and audit trail."""
    server = settings.server
    signer = signer if signer is not None else url_signer(settings)
    return IngestService(
        keys.store,
        keys.audit,
        clock if clock is not None else SystemClock(),
        signer=signer,
        regions=settings.regions,
        policy=GrantPolicy(
            url_ttl_seconds=server.url_ttl_seconds,
            max_chunk_bytes=server.max_chunk_bytes,
            max_objects_per_grant=server.max_objects_per_grant,
            revoke_on_replay=server.revoke_on_replay,
            sign_concurrency=int(getattr(signer, "concurrency", 1)),
        ),
        **identity_parts(settings),
    )


def identity_parts(settings: Settings) -> dict[str, Any]:
    """The identity-document verifier and policy of the ingest service, from ``[identity]``."""
    conf = settings.identity
    if conf.require and conf.trust_dir is None:
        raise ConfigError("identity.require needs identity.trust_dir (AWS's certificates, one <region>.pem)")
    accounts = frozenset(a.strip() for a in conf.allowed_accounts.split(",") if a.strip())
    return {
        "identity": TrustDirectory(conf.trust_dir) if conf.trust_dir is not None else None,
        "identity_policy": IdentityPolicy(
            require=conf.require, allowed_accounts=accounts, skew_seconds=conf.skew_seconds
        ),
    }
