"""The audit signing key file: generated once, 0600, atomic, and reloaded identically."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from keysvc.errors import ConfigError, SigningError
from keysvc.files import audit_signing


def test_generated_on_first_start_with_safe_modes(tmp_path: Path) -> None:
    """The key file is created 0600 in a directory created 0700, and reloads to the same signer."""
    path = tmp_path / "state" / "audit-signing-key.pem"
    first = audit_signing.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    again = audit_signing.load_or_create(path)
    assert again.signer_id == first.signer_id
    assert again.sign(b"x") == first.sign(b"x")
    assert list(path.parent.iterdir()) == [path]


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    """Processes (here threads) starting at once end up with the same key."""
    path = tmp_path / "key.pem"
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.append(audit_signing.load_or_create(path).signer_id))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert audit_signing.load_or_create(path).signer_id == ids[0]


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    """A key file readable by others is a configuration error, not silently used."""
    path = tmp_path / "key.pem"
    audit_signing.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        audit_signing.load_or_create(path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that is not an Ed25519 PEM key is a signing error."""
    path = tmp_path / "key.pem"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(SigningError):
        audit_signing.load_or_create(path)


def test_signer_id_is_public_key_fingerprint() -> None:
    """The signer id is derived from the public key and differs between keys."""
    a, b = audit_signing.AuditSigner.generate(), audit_signing.AuditSigner.generate()
    assert a.signer_id.startswith("ed25519:")
    assert len(a.signer_id) == len("ed25519:") + 32
    assert a.signer_id != b.signer_id
    assert "PRIVATE" not in a.public_key_pem()


def test_a_stale_temporary_file_does_not_block_the_first_start(tmp_path: Path) -> None:
    """A temp file left by a crashed start (with this process's pid, as in a container) is no obstacle."""
    path = tmp_path / "state" / "audit.pem"
    path.parent.mkdir()
    stale = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    stale.write_bytes(b"half a key")
    signer = audit_signing.load_or_create(path)
    assert audit_signing.load_or_create(path).signer_id == signer.signer_id
    assert path.stat().st_mode & 0o777 == 0o600
