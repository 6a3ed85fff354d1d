"""/metrics of a real ``keysvc serve`` after a scripted day: every counter right, and promtool clean.

The scenario: AddNodes (one superseding another), a grant, a refused grant, a CLI revocation (another
process: it shows in the store-read gauges), a termination event through moto's SQS consumed inside
serve, a malformed event, an admin revocation and a key expired by the sweeper.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keysvc.devtools import demo
from tests.servers import Server, free_port, http_ok, run_cli, wait_until

pytestmark = pytest.mark.integration

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SUFFIX = "var-log-cloud-init.log-0a1b2c3d/g000001/0000000000000000-0000000000000100.gz"


def call(url: str, token: str, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    """POST (or GET without a body) JSON with a bearer token; return status and body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method="POST" if data else "GET",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def scrape(url: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """The /metrics text and its samples by (name, sorted labels)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value (KeyError if the series is missing)."""
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_after_a_scripted_scenario(tmp_path: Path, moto_server: Server) -> None:
    """Issued, granted, refused, revoked by each channel, event outcomes and expiry all count exactly."""
    sqs = boto3.session.Session(region_name="us-east-1").client(
        "sqs", endpoint_url=moto_server.url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    queue = sqs.create_queue(QueueName=f"metrics-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    setup = demo.write_local_setup(
        tmp_path / "state", port=free_port(), gcs_endpoint="http://127.0.0.1:4443",
        regions={"eu": "nodelogs-eu"}, now=time.time(), sweep_interval_seconds=0.3,
    )  # fmt: skip
    with setup.config_file.open("a") as config:
        config.write(f'\n[events]\nqueue_url = "{queue}"\nendpoint_url = "{moto_server.url}"\n')
        config.write("in_serve = true\nwait_seconds = 1\n")
    env = {**os.environ, **AWS_ENV}
    log = (tmp_path / "serve.log").open("wb")
    keysvc = str(Path(sys.executable).parent / "keysvc")
    serve = subprocess.Popen(
        [keysvc, "--config", str(setup.config_file), "serve"], stdout=log, stderr=log, env=env
    )
    url, prov, admin = setup.url, setup.provisioner_token, setup.admin_token
    try:
        wait_until(lambda: http_ok(f"{url}/readyz"), timeout=30, what="keysvc serve")
        now = int(time.time())

        def add(node: str, op: str, instance: str, started: int = now) -> dict[str, object]:
            body = {"cluster": "prod", "node": node, "region": "eu", "instance": instance,
                    "operation_id": op, "started_at": started}  # fmt: skip
            status, answer = call(f"{url}/v1/nodes", prov, body)
            assert status == 201, answer
            return answer

        add("a", "op-a1", "i-00000000000000a01")
        a = add("a", "op-a2", "i-00000000000000a01")  # supersedes the first key of node a
        grant = {"cluster": "prod", "node": "a", "region": "eu", "objects": [{"name": SUFFIX}]}
        assert call(f"{url}/v1/ingest/grants", str(a["key"]), grant)[0] == 200
        assert call(f"{url}/v1/ingest/grants", "nlk1_bad", grant)[0] == 401
        b = add("b", "op-b", "i-00000000000000b01")
        add("c", "op-c", "i-00000000000000c01")
        _, samples = scrape(url)
        assert value(samples, "keysvc_live_keys") == 3
        run_cli(
            [keysvc, "--config", str(setup.config_file), "keys", "revoke", str(b["key_id"]), "--reason", "x"]
        )
        _, samples = scrape(url)
        assert value(samples, "keysvc_live_keys") == 2  # the CLI's revocation, read from the store
        event = {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
                 "detail": {"instance-id": "i-00000000000000c01", "state": "terminated"}}  # fmt: skip
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"version": "0", "id": "e1", **event}))
        sqs.send_message(QueueUrl=queue, MessageBody="{not json")
        add("d", "op-d", "i-00000000000000d01", started=now - 3598)  # expires in about 2 s
        status, _ = call(f"{url}/v1/admin/keys/{a['key_id']}/revoke", admin, {"reason": "done"})
        assert status == 200

        def settled() -> bool:
            _, s = scrape(url)
            return (
                value(s, "keysvc_events_total", outcome="revoked") == 1
                and value(s, "keysvc_events_total", outcome="malformed") >= 1
                and value(s, "keysvc_expirations_total") == 1
            )

        wait_until(settled, timeout=30, what="the event and the expiry")
        text, samples = scrape(url)
    finally:
        serve.terminate()
        serve.wait(timeout=20)
        log.close()
    expected = {
        ("keysvc_keys_issued_total", ()): 5,
        ("keysvc_grants_total", ()): 1,
        ("keysvc_revocations_total", (("reason", "superseded"),)): 1,
        ("keysvc_revocations_total", (("reason", "admin"),)): 1,
        ("keysvc_revocations_total", (("reason", "events"),)): 1,
        ("keysvc_revocations_total", (("reason", "terminated"),)): 0,
        ("keysvc_revocations_total", (("reason", "cli"),)): 0,  # counted by the CLI process, not here
        ("keysvc_refusals_total", (("reason", "malformed"),)): 1,
        ("keysvc_refusals_total", (("reason", "revoked"),)): 0,
        ("keysvc_events_total", (("outcome", "failed"),)): 0,
        ("keysvc_expirations_total", ()): 1,
        ("keysvc_live_keys", ()): 0,
        ("keysvc_ready", ()): 1,
        ("keysvc_audit_chain_ok", ()): 1,
    }
    assert {key: samples[key] for key in expected} == expected
    assert value(samples, "keysvc_sweeps_total", result="ok") >= 1
    assert value(samples, "keysvc_sweeps_total", result="error") == 0
    assert value(samples, "keysvc_audit_head_seq") >= 10
    assert 0 <= value(samples, "keysvc_event_last_age_seconds") < 30
    assert samples[("keysvc_build_info", (("python", sys.version.split()[0]), ("version", "0.1.0")))] == 1
    promtool = shutil.which("promtool")
    assert promtool
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
