"""The shipped systemd units, run with their exact Environment= lines against the test PostgreSQL.

The units set ``KEYSVC_STATE_DIR=/var/lib/keysvc`` next to a config file naming PostgreSQL. Before
keysvc had one precedence, that variable silently replaced ``state.database`` with a private SQLite
file in every process: a key issued through ``keysvc serve`` and revoked by ``keysvc-events`` lived
in two different databases. Here ``ExecStart`` and ``Environment=`` are read from the unit files,
only the paths are moved into a temporary directory, and one key goes the whole way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from keysvc.devtools import demo
from tests.servers import Server, create_database, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "systemd"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def unit_lines(unit: str, key: str) -> list[str]:
    """The values of every ``key=`` line of a shipped unit, in order."""
    prefix = f"{key}="
    lines = (UNITS / unit).read_text(encoding="utf-8").splitlines()
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


def unit_env(unit: str, paths: dict[str, str]) -> dict[str, str]:
    """The unit's Environment= variables, with its absolute paths (and %d) moved to test directories."""
    env: dict[str, str] = {}
    for line in unit_lines(unit, "Environment"):
        name, value = line.split("=", 1)
        for old, new in paths.items():
            value = value.replace(old, new)
        env[name] = value
    return env


def unit_argv(unit: str) -> list[str]:
    """ExecStart with the installed binary replaced by this venv's ``keysvc``."""
    (exec_start,) = unit_lines(unit, "ExecStart")
    binary, *args = exec_start.split()
    assert binary == "/opt/keysvc/venv/bin/keysvc"
    return [str(Path(sys.executable).parent / "keysvc"), *args]


def post(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    """POST JSON with a bearer token; return status and decoded body."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_shipped_units_share_one_postgres_database(
    tmp_path: Path, postgres: Server, moto_server: Server
) -> None:
    """serve and events consume, started as the units start them, issue and revoke one key in PostgreSQL."""
    database = create_database(postgres, f"units_{uuid.uuid4().hex[:8]}")
    etc, var, creds = tmp_path / "etc", tmp_path / "var", tmp_path / "credentials"
    for directory in (etc, var, creds):
        directory.mkdir(mode=0o700)
    setup = demo.write_local_setup(
        etc,
        port=free_port(),
        gcs_endpoint="http://127.0.0.1:4443",
        regions={"eu": "nodelogs-eu"},
        now=time.time(),
    )
    sqs = boto3.session.Session(region_name="us-east-1").client(
        "sqs", endpoint_url=moto_server.url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    queue_url = sqs.create_queue(QueueName=f"units-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    # README's PostgreSQL config: the database in the file, nothing about the state directory.
    text = setup.config_file.read_text().replace(
        f'database = "sqlite:///{etc}/keysvc.db"', f'database = "{database}"'
    )
    for line in (
        f'audit_signing_key = "{etc}/audit-signing-key.pem"',
        f'credentials_file = "{etc}/credentials.toml"',
    ):
        assert line in text
        text = text.replace(line + "\n", "")
    text += f'\n[events]\nqueue_url = "{queue_url}"\nendpoint_url = "{moto_server.url}"\nwait_seconds = 1\n'
    assert f'database = "{database}"' in text
    setup.config_file.write_text(text)
    shutil.copy(etc / "service-account.json", creds / "service-account.json")
    shutil.move(etc / "credentials.toml", var / "credentials.toml")
    paths = {"/etc/keysvc/keysvc.toml": str(setup.config_file), "/var/lib/keysvc": str(var), "%d": str(creds)}
    base = {"PATH": os.environ["PATH"], **AWS_ENV}
    serve_env = {**base, **unit_env("keysvc.service", paths)}
    events_env = {**base, **unit_env("keysvc-events.service", paths)}
    assert serve_env["KEYSVC_STATE_DIR"] == str(var) == events_env["KEYSVC_STATE_DIR"]

    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [*unit_argv("keysvc.service"), "--port", str(setup.port)], stdout=log, stderr=log, env=serve_env
    )
    try:
        wait_until(lambda: http_ok(f"{setup.url}/readyz"), timeout=30, what="keysvc serve")
        instance = "i-" + uuid.uuid4().hex[:17]
        status, issued = post(
            f"{setup.url}/v1/nodes",
            setup.provisioner_token,
            {"cluster": "prod", "node": "n1", "region": "eu", "instance": instance,
             "operation_id": "op-1", "started_at": int(time.time())},
        )  # fmt: skip
        assert status == 201, issued
        detail = {"instance-id": instance, "state": "terminated"}
        event = {
            "source": "aws.ec2",
            "detail-type": "EC2 Instance State-change Notification",
            "detail": detail,
        }
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"version": "0", "id": "e1", **event}))
        consumed = subprocess.run(
            [*unit_argv("keysvc-events.service"), "--once"],
            env=events_env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert consumed.returncode == 0, consumed.stderr
        grant = {"cluster": "prod", "node": "n1", "region": "eu", "objects": []}
        status, _ = post(f"{setup.url}/v1/ingest/grants", str(issued["key"]), grant)
        assert status == 401  # the revocation the consumer committed holds in serve at its next request
    finally:
        serve.terminate()
        serve.wait(timeout=20)
        log.close()
    assert not (var / "keysvc.db").exists(), "a unit opened a private SQLite database"
    shown = subprocess.run(
        [*unit_argv("keysvc.service")[:1], "keys", "show", str(issued["key_id"]), "-o", "json"],
        env={**base, "KEYSVC_DATABASE": database, "KEYSVC_STATE_DIR": str(var)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(shown.stdout)["state"] == "revoked"
