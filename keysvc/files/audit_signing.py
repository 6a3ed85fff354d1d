"""The audit signing key on disk: an Ed25519 private key in a root-only PEM file.

The key is generated on first start and written atomically (temporary file in the same directory,
fsync, ``os.replace``) with mode 0600, in a directory created 0700. Its public half is exportable
(``keysvc audit public-key``) so third parties can verify exports without trusting this host.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keysvc.core import auditchain
from keysvc.errors import ConfigError, SigningError, StateMissing
from keysvc.files.private_files import write_private


class AuditSigner:
    """Signs audit records and chain heads with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key()
        self._id = auditchain.fingerprint(self._public)

    @classmethod
    def generate(cls) -> AuditSigner:
        """Make a signer with a fresh key, held only in memory."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def signer_id(self) -> str:
        """The fingerprint of the public key."""
        return self._id

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half."""
        return self._public

    def public_key_pem(self) -> str:
        """The public half as PEM."""
        return auditchain.public_key_pem(self._public)

    def sign(self, message: bytes) -> bytes:
        """Return an Ed25519 signature over ``message``."""
        return self._key.sign(message)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, for writing the key file only."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def load_or_create(path: Path) -> AuditSigner:
    """Load the signing key at ``path``, generating it (0600, atomically) when it does not exist yet."""
    try:
        return load(path)
    except StateMissing:
        signer = AuditSigner.generate()
        try:
            write_private(path, signer.private_pem(), replace=False)
        except FileExistsError:
            return load(path)
        except OSError as exc:
            raise ConfigError(f"cannot write audit signing key {path}: {exc.strerror}") from exc
        return signer


def load(path: Path) -> AuditSigner:
    """Load the signing key at ``path``; a missing file is :class:`StateMissing`, never created."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise StateMissing(f"no audit signing key at {path}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read audit signing key {path}: {exc.strerror}") from exc
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"audit signing key {path} must not be readable by group or others (chmod 600)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"audit signing key {path} is not a valid PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"audit signing key {path} is not an Ed25519 key")
    return AuditSigner(key)
