"""The trust directory of AWS's public certificates for instance identity document signatures.

One PEM file per region, named ``<region>.pem`` (for example ``us-east-1.pem``): the RSA certificate
AWS publishes for the base64 ``signature`` ("AWS public certificates for instance identity document
signatures"). Nothing is fetched: the operator places the files, and tests place a test CA's.
:meth:`TrustDirectory.verify` parses the document only to pick its region's certificate, then trusts
nothing in it until the signature verified (:mod:`keysvc.core.identity`).
"""

from __future__ import annotations

from pathlib import Path

from keysvc.core.identity import REGION_PATTERN, IdentityDocument, parse_document, verify_signature
from keysvc.wire.results import Failure, Reason, Success


class TrustDirectory:
    """Verifies identity documents against the certificates in one directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _certificate(self, region: str) -> bytes | None:
        if not REGION_PATTERN.fullmatch(region):
            return None
        try:
            return (self.path / f"{region}.pem").read_bytes()
        except OSError:
            return None

    def verify(self, document: bytes, signature: str) -> Success[IdentityDocument] | Failure:
        """Return the document once its signature verified under its region's certificate."""
        parsed = parse_document(document)
        if isinstance(parsed, Failure):
            return parsed
        certificate = self._certificate(parsed.value.region)
        if certificate is None:
            return Failure(Reason.BAD_SIGNATURE, f"no trusted certificate for region {parsed.value.region}")
        failure = verify_signature(document, signature, certificate)
        return failure if failure is not None else parsed
