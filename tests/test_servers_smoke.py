"""Smoke tests that each real server the suite depends on starts and answers."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from tests import servers


def test_fake_gcs_answers(fake_gcs: servers.Server) -> None:
    """fake-gcs-server lists buckets over its JSON API."""
    assert servers.http_ok(f"{fake_gcs.url}/storage/v1/b")


def test_postgres_accepts_queries(postgres: servers.Server) -> None:
    """The throwaway PostgreSQL answers a query through psql."""
    out = subprocess.run(
        ["psql", postgres.url, "-Atc", "select 6*7"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "42"


def test_tinyproxy_forwards(tinyproxy: servers.Server, fake_gcs: servers.Server) -> None:
    """tinyproxy forwards a plain HTTP request and logs it."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": tinyproxy.url}))
    with opener.open(f"{fake_gcs.url}/storage/v1/b", timeout=5) as response:
        assert response.status == 200
    assert "storage/v1/b" in Path(tinyproxy.extra["log"]).read_text()


def test_moto_answers(moto_server: servers.Server) -> None:
    """moto's server answers its management API."""
    assert servers.http_ok(f"{moto_server.url}/moto-api/")
