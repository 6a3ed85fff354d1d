"""Schemathesis against a live `keysvc serve`: generated requests never cause a 5xx and every answer
conforms to the served OpenAPI document (status codes, content types, schemas, headers)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from keysvc.files.credentials import create_credential
from tests import servers

pytestmark = pytest.mark.integration

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
    ]
)


@pytest.mark.xdist_group("schemathesis")
def test_schemathesis_finds_no_5xx_and_no_nonconforming_answer(
    fake_gcs: servers.Server, tmp_path: Path
) -> None:
    """`st run` (coverage and fuzzing phases, bounded examples) passes every conformance check."""
    server = servers.start_keysvc(fake_gcs.url, serve_args=["--auth-burst", "1000000"])
    try:
        credentials = Path(server.extra["state_dir"]) / "credentials.toml"
        scopes = ["nodes:add", "nodes:terminate", "admin:read", "admin:revoke"]
        _, token = create_credential(credentials, name="fuzzer", scopes=scopes, now=time.time())
        st = Path(sys.executable).parent / "st"
        argv = [
            str(st), "run", f"{server.url}/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", CHECKS,
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", "100",
            "--seed", "20261128",
            "--generation-database", "none",
            "--workers", "2",
            "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path),
        ]  # fmt: skip
        started = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert time.monotonic() - started < 60
        assert "passed" in result.stdout
        assert server.process.poll() is None
    finally:
        server.close()
