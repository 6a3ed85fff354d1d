"""The check that every writer of one audit chain holds the same signing key."""

from __future__ import annotations

import pytest

from keysvc.core.clock import ManualClock
from keysvc.core.models import AddNode
from keysvc.errors import ConfigError
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.keys import KeyService
from keysvc.service.ports import Store
from tests.keysvc.conftest import REGIONS


def test_empty_chain_accepts_any_signer(store: Store, clock: ManualClock) -> None:
    """A fresh database has no head yet, so any signing key may start it."""
    KeyService(store, AuditSigner.generate(), clock, regions=REGIONS).audit.check_signer()


def test_replica_with_another_signing_key_is_refused(
    store: Store, signer: AuditSigner, clock: ManualClock
) -> None:
    """A second writer holding a different key is refused before it can append unverifiable records."""
    first = KeyService(store, signer, clock, regions=REGIONS)
    first.add_node(
        AddNode("prod", "node-1", "i-0123456789abcdef0", "eu", "op-1", clock.now()), actor="provisioner"
    )
    first.audit.check_signer()
    KeyService(store, signer, clock, regions=REGIONS).audit.check_signer()
    stranger = KeyService(store, AuditSigner.generate(), clock, regions=REGIONS)
    with pytest.raises(ConfigError, match="same audit signing key"):
        stranger.audit.check_signer()
