"""`keysvc serve` as a process: credential rotation without restart, the sweeper, graceful shutdown."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests import servers
from tests.integration.service_client import add_node, bearer, client, unique

pytestmark = pytest.mark.integration


def test_credentials_rotate_without_restart(keysvc_server: servers.Server) -> None:
    """A token made by `keysvc credentials create` works at once; after `delete` the old one is refused."""
    config = keysvc_server.extra["config"]
    created = servers.run_cli(
        ["keysvc", "--config", config, "credentials", "create", "--name", "prov-rotated",
         "--scope", "nodes:add", "--scope", "nodes:terminate", "--json"]
    )  # fmt: skip
    new = json.loads(created.stdout)
    assert new["token"].startswith("nlt1_")
    assert new["token"] not in (keysvc_server.extra["state_dir"] + "/credentials.toml")
    with open(config.replace("keysvc.toml", "credentials.toml")) as handle:  # noqa: PTH123
        assert new["token"] not in handle.read()
    with client("127.0.0.31") as http:
        rotated = servers.Server(
            **{**keysvc_server.__dict__, "extra": {**keysvc_server.extra, "provisioner": new["token"]}}
        )
        add_node(http, rotated, unique())
        listed = servers.run_cli(["keysvc", "--config", config, "credentials", "list", "--json"])
        assert new["token"] not in listed.stdout
        servers.run_cli(["keysvc", "--config", config, "credentials", "delete", "--id", new["id"]])
        body = {"instance": "i-0123456789abcdef0"}
        refused = http.post(
            f"{keysvc_server.url}/v1/nodes/terminated", json=body, headers=bearer(new["token"])
        )
        assert refused.status_code == 401


def test_sweeper_expires_keys_in_the_background(fake_gcs: servers.Server) -> None:
    """With a 2 s key TTL the in-process sweeper marks the key expired and audits it, unprompted."""
    server = servers.start_keysvc(fake_gcs.url, key_ttl_seconds=2, sweep_interval_seconds=0.2)
    try:
        with client() as http:
            key = add_node(http, server, unique())

            def expired_audited() -> bool:
                query = {"key_id": key["key_id"], "event": "expired"}
                answer = http.get(
                    f"{server.url}/v1/admin/audit", params=query, headers=bearer(server.extra["admin"])
                )
                return len(answer.json()["records"]) == 1

            servers.wait_until(expired_audited, timeout=10, what="the sweeper's expired record")
            shown = http.get(
                f"{server.url}/v1/admin/keys/{key['key_id']}", headers=bearer(server.extra["admin"])
            )
            assert shown.json()["state"] == "expired"
    finally:
        server.close()


def test_sigterm_shuts_down_gracefully(fake_gcs: servers.Server) -> None:
    """SIGTERM makes `keysvc serve` stop accepting, finish, close the store and exit 0."""
    server = servers.start_keysvc(fake_gcs.url)
    try:
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        assert not servers.port_open(server.port)
        with open(server.extra["log"]) as handle:  # noqa: PTH123
            assert '"event": "stopped"' in handle.read()
    finally:
        server.close()
