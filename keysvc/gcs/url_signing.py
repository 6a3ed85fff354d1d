"""Signed upload URLs: the :class:`UrlSigner` interface and its GCS V4 implementation.

The implementation signs with google-cloud-storage's V4 signer (the function behind
``Blob.generate_signed_url(version="v4")``), called directly so that the request timestamp comes
from keysvc's injected clock rather than the library's own. That keeps :mod:`keysvc.core.grants`'s
promise exact (a URL never outlives its key) and makes URLs reproducible in tests.

The service-account key is read from a JSON file, lazily: a missing or broken file makes
:meth:`GcsUrlSigner.check_ready` fail (``/readyz`` answers 503) instead of stopping the server.
With an emulator endpoint configured, URLs point at the emulator instead of storage.googleapis.com.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud.storage._signing import generate_signed_url_v4
from google.oauth2 import service_account

from keysvc.errors import SigningError
from keysvc.files.private_files import write_private

GCS_ENDPOINT = "https://storage.googleapis.com"


class UrlSigner(Protocol):
    """Anything that can produce a signed PUT URL for one object."""

    def sign_put(
        self, *, bucket: str, object_name: str, headers: Mapping[str, str], signed_at: int, expires_in: int
    ) -> str:
        """Return a URL that allows one PUT of ``object_name`` with exactly ``headers``."""
        ...

    def check_ready(self) -> None:
        """Raise :class:`SigningError` when no URL can be signed right now."""
        ...


def v4_timestamp(signed_at: int) -> str:
    """Return the ``X-Goog-Date`` form of a Unix time: ``YYYYMMDDTHHMMSSZ``."""
    return datetime.fromtimestamp(signed_at, UTC).strftime("%Y%m%dT%H%M%SZ")


def object_resource(bucket: str, object_name: str) -> str:
    """Return the path-style resource of an object, quoted as the V4 canonical request wants it."""
    return f"/{bucket}/{urllib.parse.quote(object_name, safe='/~')}"


class GcsUrlSigner:
    """Signs GCS V4 URLs with a service-account key file."""

    def __init__(self, service_account_file: Path, endpoint: str = "") -> None:
        self._file = service_account_file
        self._endpoint = (endpoint or GCS_ENDPOINT).rstrip("/")
        self._lock = threading.Lock()
        self._credentials: Any = None

    @property
    def endpoint(self) -> str:
        """The scheme and host the URLs point at."""
        return self._endpoint

    def _load(self) -> Any:
        with self._lock:
            if self._credentials is None:
                try:
                    if self._file.stat().st_mode & 0o077:
                        raise SigningError(
                            f"service account file {self._file} must not be readable by group or others "
                            "(chmod 600)"
                        )
                    self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                        str(self._file)
                    )
                except (OSError, ValueError, KeyError) as exc:
                    raise SigningError(f"cannot load the service account file {self._file}") from exc
            return self._credentials

    def check_ready(self) -> None:
        """Load the service-account key if that has not happened yet."""
        self._load()

    def sign_put(
        self, *, bucket: str, object_name: str, headers: Mapping[str, str], signed_at: int, expires_in: int
    ) -> str:
        """Sign a PUT of one object, binding ``headers``, valid from ``signed_at`` for ``expires_in`` s."""
        if expires_in < 1:
            raise SigningError("a signed URL needs at least one second of lifetime")
        credentials = self._load()
        try:
            url: str = generate_signed_url_v4(
                credentials,
                resource=object_resource(bucket, object_name),
                expiration=expires_in,
                api_access_endpoint=self._endpoint,
                method="PUT",
                headers=dict(headers),
                _request_timestamp=v4_timestamp(signed_at),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise SigningError("the V4 signer refused the request") from exc
        return url


def new_service_account_file(path: Path, *, email: str, project: str = "nodelogs-local") -> None:
    """Write a service-account JSON file around a freshly generated RSA-2048 key, mode 0600.

    For tests and the demo: the emulator does not check signatures, and no key material is ever
    committed. Real deployments use the file Google issues.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    document = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "local",
        "private_key": pem,
        "client_email": email,
        "client_id": "0",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    write_private(path, json.dumps(document, indent=2).encode("utf-8"))
