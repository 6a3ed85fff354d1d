"""Keyless signing through IAM signBlob, against tests/iam_server.py (the documented REST contracts).

No emulator of the IAM Credentials API or of the metadata server exists; tests/iam_server.py
implements their documented endpoints and signs with a real RSA key generated per test, whose
public half verifies every URL here exactly as tests/signed_urls.py verifies key-file URLs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysvc.devtools import demo
from keysvc.errors import SigningError
from keysvc.gcs.iam_signing import IamClient, IamUrlSigner
from tests.iam_server import IamServer
from tests.servers import free_port, wait_until
from tests.signed_urls import verify_v4

pytestmark = pytest.mark.integration

HEADERS = {"content-type": "application/gzip", "x-goog-if-generation-match": "0"}
SUFFIX = "var-log-cloud-init.log-0a1b2c3d/g000001/{start:016d}-{end:016d}.gz"


@pytest.fixture
def iam() -> Iterator[IamServer]:
    """A fresh metadata + signBlob stand-in."""
    server = IamServer()
    yield server
    server.close()


def signer_for(iam: IamServer) -> IamUrlSigner:
    """An IAM signer pointed at the stand-in, with retries that do not really sleep."""
    client = IamClient(metadata_endpoint=iam.url, iam_endpoint=iam.url, sleep=lambda _s: None)
    return IamUrlSigner(client, "http://127.0.0.1:4443")


def sign(signer: IamUrlSigner, name: str = "a/b.gz") -> str:
    """One PUT URL for ``name`` in bucket b."""
    return signer.sign_put(
        bucket="nodelogs-eu", object_name=name, headers=HEADERS, signed_at=int(time.time()), expires_in=300
    )


def test_urls_verify_with_the_public_key_and_the_token_is_cached(iam: IamServer) -> None:
    """Each URL's V4 signature verifies under the account's public key; ten URLs cost one token fetch."""
    signer = signer_for(iam)
    urls = [sign(signer, f"x/{i}.gz") for i in range(10)]
    for i, url in enumerate(urls):
        signed = verify_v4(url, "PUT", HEADERS, iam.state.public_key)
        assert signed.object_name == f"x/{i}.gz"
        assert signed.credential == iam.state.email
    assert iam.state.token_requests == 1
    assert iam.state.sign_requests == 10


def test_token_endpoint_failing_is_a_signing_error_without_secrets(iam: IamServer) -> None:
    """A metadata server answering 500 makes check_ready and signing fail; it recovers when it answers."""
    iam.state.token_status = 500
    signer = signer_for(iam)
    with pytest.raises(SigningError, match="metadata server"):
        signer.check_ready()
    with pytest.raises(SigningError):
        sign(signer)
    iam.state.token_status = None
    signer.check_ready()
    verify_v4(sign(signer), "PUT", HEADERS, iam.state.public_key)


def test_sign_blob_429_is_retried_and_repeated_503_fails_then_recovers(iam: IamServer) -> None:
    """One 429 is absorbed by a retry; two 503s in a row are a SigningError naming only the status."""
    signer = signer_for(iam)
    iam.state.sign_statuses.extend([429])
    verify_v4(sign(signer), "PUT", HEADERS, iam.state.public_key)
    iam.state.sign_statuses.extend([503, 503])
    with pytest.raises(SigningError, match="signBlob answered 503") as caught:
        sign(signer)
    assert not any(token in str(caught.value) for token in iam.state.tokens)
    verify_v4(sign(signer), "PUT", HEADERS, iam.state.public_key)


def _post(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_serve_with_the_iam_signer_end_to_end(tmp_path: Path, iam: IamServer) -> None:
    """serve with gcs.signer = "iam" and no key file: AddNode, grant, URLs verified, 503, then recovery."""
    setup = demo.write_local_setup(
        tmp_path / "state", port=free_port(), gcs_endpoint="http://127.0.0.1:4443",
        regions={"eu": "nodelogs-eu"}, now=time.time(),
    )  # fmt: skip
    (tmp_path / "state" / "service-account.json").unlink()  # keyless: no key file anywhere
    text = setup.config_file.read_text().replace(
        "[gcs]\n", f'[gcs]\nsigner = "iam"\nmetadata_endpoint = "{iam.url}"\niam_endpoint = "{iam.url}"\n'
    )
    setup.config_file.write_text(text)
    iam.state.token_status = 503  # the metadata server is not answering yet
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(Path(sys.executable).parent / "keysvc"), "--config", str(setup.config_file), "serve"],
        stdout=log, stderr=log, env=dict(os.environ),
    )  # fmt: skip
    try:
        wait_until(lambda: _status(f"{setup.url}/readyz") == 503, timeout=30, what="serve, not ready")
        iam.state.token_status = None
        wait_until(lambda: _status(f"{setup.url}/readyz") == 200, timeout=30, what="serve ready")
        body = {
            "cluster": "prod",
            "node": "n1",
            "region": "eu",
            "operation_id": "op",
            "started_at": int(time.time()),
        }
        status, key = _post(f"{setup.url}/v1/nodes", setup.provisioner_token, body)
        assert status == 201, key
        names = [{"name": SUFFIX.format(start=i, end=i + 1)} for i in range(4)]
        grant = {"cluster": "prod", "node": "n1", "region": "eu", "objects": names}
        status, answer = _post(f"{setup.url}/v1/ingest/grants", str(key["key"]), grant)
        assert status == 200, answer
        grants = answer["grants"]
        assert isinstance(grants, list)
        assert len(grants) == 4
        for item in grants:
            signed = verify_v4(item["url"], "PUT", item["headers"], iam.state.public_key)
            assert signed.object_name == item["object"]
            assert signed.bucket == "nodelogs-eu"
        iam.state.sign_statuses.extend([503] * 8)
        status, refused = _post(f"{setup.url}/v1/ingest/grants", str(key["key"]), grant)
        assert (status, refused["error"]) == (503, "signer_unavailable")
        iam.state.sign_statuses.clear()
        status, again = _post(f"{setup.url}/v1/ingest/grants", str(key["key"]), grant)
        assert status == 200, again
    finally:
        serve.terminate()
        serve.wait(timeout=20)
        log.close()
    assert iam.state.token_requests <= 3  # the failed tries at start, then one token for every URL
    logged = (tmp_path / "serve.log").read_text()
    assert not any(token in logged for token in iam.state.tokens)
