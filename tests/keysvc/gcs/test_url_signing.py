"""Unit tests of the GCS V4 signer, checked against an independent implementation of the V4 rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from keysvc.core.grants import upload_headers
from keysvc.errors import SigningError
from keysvc.gcs.url_signing import GcsUrlSigner, new_service_account_file, object_resource, v4_timestamp
from tests.signed_urls import public_key_of, verify_v4

EMAIL = "keysvc@nodelogs-test.iam.gserviceaccount.com"
OBJECT = "nodelogs/prod/node-1.ec2.internal/cloud-init.log-1a2b/g000001/0000000000000000-0000000000000010.gz"


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account file around a fresh RSA key."""
    path = tmp_path_factory.mktemp("sa") / "service-account.json"
    new_service_account_file(path, email=EMAIL)
    return path


def test_service_account_file_is_private(account: Path) -> None:
    """The generated key file is readable by its owner only."""
    assert account.stat().st_mode & 0o777 == 0o600


def test_signature_verifies_with_the_public_key(account: Path) -> None:
    """A URL's V4 signature verifies under the service account's public key, with every header bound."""
    signer = GcsUrlSigner(account, "http://127.0.0.1:4443")
    headers = upload_headers(1024)
    url = signer.sign_put(
        bucket="nodelogs-eu", object_name=OBJECT, headers=headers, signed_at=1_800_000_000, expires_in=300
    )
    signed = verify_v4(url, "PUT", headers, public_key_of(account))
    assert signed.host == "127.0.0.1:4443"
    assert signed.bucket == "nodelogs-eu"
    assert signed.object_name == OBJECT
    assert signed.signed_headers == (
        "content-type",
        "host",
        "x-goog-content-length-range",
        "x-goog-if-generation-match",
    )
    assert (signed.signed_at, signed.expires_in) == (1_800_000_000, 300)
    assert signed.credential == EMAIL


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("content-type", "text/plain"),
        ("x-goog-if-generation-match", "1"),
        ("x-goog-content-length-range", "0,99999999"),
    ],
)
def test_changing_a_signed_header_breaks_the_signature(account: Path, header: str, value: str) -> None:
    """A PUT that changes content type, create-only precondition or size bound no longer matches."""
    signer = GcsUrlSigner(account)
    headers = upload_headers(1024)
    url = signer.sign_put(
        bucket="b-eu", object_name=OBJECT, headers=headers, signed_at=1_800_000_000, expires_in=60
    )
    with pytest.raises(AssertionError, match="does not verify"):
        verify_v4(url, "PUT", {**headers, header: value}, public_key_of(account))


def test_another_path_or_method_breaks_the_signature(account: Path) -> None:
    """The signature binds the object path and the PUT method."""
    signer = GcsUrlSigner(account)
    headers = upload_headers(1024)
    url = signer.sign_put(
        bucket="b-eu", object_name=OBJECT, headers=headers, signed_at=1_800_000_000, expires_in=60
    )
    with pytest.raises(AssertionError, match="does not verify"):
        verify_v4(url, "GET", headers, public_key_of(account))
    with pytest.raises(AssertionError, match="does not verify"):
        verify_v4(url.replace("node-1.ec2", "node-2.ec2"), "PUT", headers, public_key_of(account))


def test_default_endpoint_is_real_gcs(account: Path) -> None:
    """Without an emulator endpoint, URLs point at storage.googleapis.com."""
    url = GcsUrlSigner(account).sign_put(
        bucket="b-eu", object_name=OBJECT, headers=upload_headers(1), signed_at=1_800_000_000, expires_in=1
    )
    assert url.startswith("https://storage.googleapis.com/b-eu/nodelogs/prod/")


def test_missing_account_file_is_a_signing_error(tmp_path: Path) -> None:
    """A missing service-account file makes the signer not ready instead of crashing."""
    signer = GcsUrlSigner(tmp_path / "absent.json")
    with pytest.raises(SigningError):
        signer.check_ready()


def test_group_readable_account_file_is_refused(tmp_path: Path) -> None:
    """A service-account key readable by group or others is refused, naming the fix, until it is 0600."""
    path = tmp_path / "service-account.json"
    new_service_account_file(path, email=EMAIL)
    path.chmod(0o644)
    signer = GcsUrlSigner(path)
    with pytest.raises(SigningError, match="chmod 600"):
        signer.check_ready()
    path.chmod(0o600)
    signer.check_ready()


def test_zero_lifetime_is_refused(account: Path) -> None:
    """A URL with no lifetime left is never signed."""
    with pytest.raises(SigningError):
        GcsUrlSigner(account).sign_put(
            bucket="b", object_name=OBJECT, headers=upload_headers(1), signed_at=1_800_000_000, expires_in=0
        )


def test_v4_timestamp_and_resource() -> None:
    """The V4 date is UTC whole seconds and object names are quoted but keep their slashes."""
    assert v4_timestamp(1_800_000_000) == "20270115T080000Z"
    assert object_resource("b", "a b/c~d") == "/b/a%20b/c~d"
