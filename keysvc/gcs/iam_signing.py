"""Keyless V4 URL signing: the metadata server's access token and the IAM Credentials ``signBlob`` API.

For deployments where no service-account key file may exist (``iam.disableServiceAccountKeyCreation``):
on GKE with Workload Identity, Cloud Run or a GCE VM, the metadata server hands out an access token
for the attached service account, and ``signBlob`` signs the V4 string-to-sign with Google's own copy
of that account's key. The REST contracts (documented by Google):

- ``GET {metadata}/computeMetadata/v1/instance/service-accounts/default/token`` with
  ``Metadata-Flavor: Google`` answers ``{"access_token", "expires_in", "token_type"}``;
  ``.../default/email`` answers the account's e-mail as text;
- ``POST {iam}/v1/projects/-/serviceAccounts/{email}:signBlob`` with ``Authorization: Bearer`` and
  ``{"payload": base64}`` answers ``{"keyId", "signedBlob": base64}`` (RSA-SHA256, what V4 wants).

The canonical request and string-to-sign are still google-cloud-storage's: it is handed a
``google.auth`` signing credential whose ``sign_bytes`` calls ``signBlob``. The token is cached until
60 s before it expires (one metadata call per token, not per URL). A 429 or 5xx from ``signBlob`` is
retried once after a short pause; then, like a token that cannot be fetched, it is a
:class:`~keysvc.errors.SigningError` (the grant answers 503 and the agent retries later). The access
token never appears in a log or an error message.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import google.auth.credentials
from google.cloud.storage._signing import generate_signed_url_v4

from keysvc.errors import SigningError
from keysvc.gcs.url_signing import GCS_ENDPOINT, object_resource, v4_timestamp

METADATA_ENDPOINT = "http://metadata.google.internal"
IAM_ENDPOINT = "https://iamcredentials.googleapis.com"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"  # noqa: S105 - a path, no secret
EMAIL_PATH = "/computeMetadata/v1/instance/service-accounts/default/email"
TOKEN_MARGIN_SECONDS = 60.0
RETRY_STATUSES = {429, 500, 502, 503, 504}
TIMEOUT_SECONDS = 10.0


class IamClient:
    """The metadata token (cached) and ``signBlob`` calls, over HTTP."""

    def __init__(
        self,
        *,
        email: str = "",
        metadata_endpoint: str = METADATA_ENDPOINT,
        iam_endpoint: str = IAM_ENDPOINT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._email = email
        self._metadata = metadata_endpoint.rstrip("/")
        self._iam = iam_endpoint.rstrip("/")
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None
        self.token_fetches = 0

    def _get(self, path: str) -> bytes:
        # Both endpoints are validated http(s) URLs from the configuration (S310).
        request = urllib.request.Request(self._metadata + path, headers={"Metadata-Flavor": "Google"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return bytes(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise SigningError(f"the metadata server did not answer {path}: {_why(exc)}") from exc

    def email(self) -> str:
        """The service account's e-mail: configured, else the metadata server's default account."""
        if not self._email:
            self._email = self._get(EMAIL_PATH).decode("utf-8").strip()
        return self._email

    def token(self) -> str:
        """A valid access token, fetched once per lifetime (minus a margin)."""
        with self._lock:
            if self._token is not None and self._clock() < self._token[1]:
                return self._token[0]
            try:
                answer = json.loads(self._get(TOKEN_PATH))
                token, lifetime = str(answer["access_token"]), float(answer["expires_in"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SigningError(
                    "the metadata server's token answer is not what its contract says"
                ) from exc
            self.token_fetches += 1
            self._token = (token, self._clock() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS))
            return token

    def sign_blob(self, payload: bytes) -> bytes:
        """RSA-SHA256 signature of ``payload`` by the service account's Google-held key."""
        email = self.email()
        url = f"{self._iam}/v1/projects/-/serviceAccounts/{urllib.parse.quote(email, safe='@')}:signBlob"
        body = json.dumps({"payload": base64.b64encode(payload).decode("ascii")}).encode("ascii")
        for attempt in (1, 2):
            request = urllib.request.Request(  # noqa: S310 - a validated http(s) URL
                url,
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                    return base64.b64decode(json.loads(response.read())["signedBlob"])
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self._token = None  # revoked or expired early: fetch a fresh one and retry once
                    continue
                if exc.code in RETRY_STATUSES and attempt == 1:
                    self._sleep(0.2)
                    continue
                raise SigningError(f"signBlob answered {exc.code}") from exc
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                raise SigningError(f"signBlob failed: {_why(exc)}") from exc
        raise SigningError("signBlob kept failing")


def _why(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return type(exc).__name__ if reason is None else str(reason)


class _IamCredentials(google.auth.credentials.Signing):
    """The google-auth signing interface over :class:`IamClient`, for google-cloud-storage's V4 signer."""

    def __init__(self, client: IamClient) -> None:
        self._client = client

    def sign_bytes(self, message: bytes) -> bytes:
        """Sign through signBlob."""
        return self._client.sign_blob(message)

    @property
    def signer_email(self) -> str:
        """The account the URL is signed for."""
        return self._client.email()

    @property
    def signer(self) -> Any:
        """google-auth's signer object; V4 URL signing needs only ``sign_bytes``."""
        return None


class IamUrlSigner:
    """Signs GCS V4 URLs without a key file, through the IAM Credentials API."""

    concurrency = 8  # signBlob is a network round trip: a grant's URLs are signed in parallel

    def __init__(self, client: IamClient, endpoint: str = "") -> None:
        self.client = client
        self._credentials = _IamCredentials(client)
        self._endpoint = (endpoint or GCS_ENDPOINT).rstrip("/")

    def check_ready(self) -> None:
        """Ready when the metadata server hands out a token and names the account."""
        self.client.token()
        self.client.email()

    def sign_put(
        self, *, bucket: str, object_name: str, headers: Mapping[str, str], signed_at: int, expires_in: int
    ) -> str:
        """Sign a PUT of one object, binding ``headers``, valid from ``signed_at`` for ``expires_in`` s."""
        if expires_in < 1:
            raise SigningError("a signed URL needs at least one second of lifetime")
        try:
            url: str = generate_signed_url_v4(
                self._credentials,
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
