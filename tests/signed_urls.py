"""An independent check of GCS V4 signed URLs, written from Google's documentation, not the library.

Used by unit and integration tests to prove each URL's security properties directly (the emulator
checks none of them): the signature verifies under the service account's PUBLIC key, the signed
headers are exactly the expected ones, and the expiry and object path are what they should be.
See https://cloud.google.com/storage/docs/authentication/signatures.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@dataclass(frozen=True)
class SignedUrl:
    """What a verified V4 URL grants."""

    method: str
    host: str
    bucket: str
    object_name: str
    signed_headers: tuple[str, ...]
    signed_at: int
    expires_in: int
    credential: str

    @property
    def expires_at(self) -> int:
        """The Unix second the URL stops working."""
        return self.signed_at + self.expires_in


def public_key_of(service_account_file: str | Path) -> rsa.RSAPublicKey:
    """Return the RSA public key of a service-account JSON file (only the public half is used)."""
    document = json.loads(Path(service_account_file).read_text())
    private = serialization.load_pem_private_key(document["private_key"].encode(), password=None)
    public = private.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return public


def _encode(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def verify_v4(url: str, method: str, headers: Mapping[str, str], public_key: rsa.RSAPublicKey) -> SignedUrl:
    """Recompute the V4 canonical request of ``url`` sent with ``headers``; raise if the signature fails."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    params = dict(query)
    assert len(params) == len(query), "a query parameter appears twice"
    signature = bytes.fromhex(params.pop("X-Goog-Signature"))
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    sent = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    sent["host"] = parts.netloc
    signed_names = params["X-Goog-SignedHeaders"].split(";")
    assert signed_names == sorted(signed_names), "signed headers must be sorted"
    assert set(signed_names) == set(sent), f"signed {signed_names} but the request sends {sorted(sent)}"
    canonical_headers = "".join(f"{name}:{sent[name]}\n" for name in signed_names)
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
    canonical_request = "\n".join(
        [method, parts.path, canonical_query, canonical_headers, ";".join(signed_names), "UNSIGNED-PAYLOAD"]
    )
    date = params["X-Goog-Date"]
    email, scope = params["X-Goog-Credential"].split("/", 1)
    assert scope == f"{date[:8]}/auto/storage/goog4_request"
    string_to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    try:
        public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise AssertionError(
            "the V4 signature does not verify under the service account's public key"
        ) from exc
    bucket, _, object_path = parts.path.lstrip("/").partition("/")
    signed_at = int(datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
    return SignedUrl(
        method=method,
        host=parts.netloc,
        bucket=bucket,
        object_name=urllib.parse.unquote(object_path),
        signed_headers=tuple(signed_names),
        signed_at=signed_at,
        expires_in=int(params["X-Goog-Expires"]),
        credential=email,
    )
