"""A test CA that stands in for AWS's instance-identity certificate, and documents it signs.

Not collected by pytest. :class:`FakeAws` writes its certificate as ``<region>.pem`` into a trust
directory and signs documents shaped like IMDS's ``/latest/dynamic/instance-identity/document``,
returning the base64 RSA-SHA256 ``signature`` IMDS would serve beside it.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ACCOUNT = "123456789012"
REGION = "us-east-1"


@functools.cache
def _key(seed: int) -> rsa.RSAPrivateKey:
    """One RSA key per seed per test process (generation is slow)."""
    del seed
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeAws:
    """A certificate and the key that signs documents under it."""

    seed: int = 0

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The signing key."""
        return _key(self.seed)

    def certificate_pem(self) -> bytes:
        """A self-signed certificate for the key, as AWS publishes one per region."""
        name = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test stand-in for Amazon Web Services")]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def trust(self, directory: Path, region: str = REGION) -> Path:
        """Write the certificate as ``<region>.pem`` into ``directory`` and return the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{region}.pem").write_bytes(self.certificate_pem())
        return directory

    def document(self, instance: str, *, pending: float, **overrides: Any) -> tuple[bytes, str]:
        """An identity document for ``instance`` and its base64 signature."""
        pending_time = datetime.datetime.fromtimestamp(pending, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = {
            "accountId": ACCOUNT,
            "architecture": "x86_64",
            "availabilityZone": f"{REGION}a",
            "imageId": "ami-0123456789abcdef0",
            "instanceId": instance,
            "instanceType": "m5.large",
            "pendingTime": pending_time,
            "privateIp": "10.0.0.12",
            "region": REGION,
            "version": "2017-09-30",
            **overrides,
        }
        raw = json.dumps(fields, indent=2).encode()
        return raw, self.sign(raw)

    def sign(self, raw: bytes) -> str:
        """The base64 RSA-SHA256 signature of ``raw``."""
        return base64.b64encode(self.key.sign(raw, padding.PKCS1v15(), hashes.SHA256())).decode()
