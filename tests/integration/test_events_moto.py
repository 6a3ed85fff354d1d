"""Termination events on moto's server: EventBridge rule -> SQS -> `keysvc events consume` -> revoked.

moto does not emit state-change events when an instance terminates, so each test publishes the event
with put_events, as EC2 would; the README's rule pattern (keysvc.aws.events.STATE_CHANGE_PATTERN) decides
what reaches the queue. The consumer runs as a real `keysvc` process (or thread) on a real SQLite store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from keysvc.aws.events import LIFECYCLE_PATTERN, STATE_CHANGE_PATTERN
from keysvc.aws.sqs_consumer import EventConsumer, make_clients, start_consumer_thread
from keysvc.config import EventsConfig
from keysvc.core.models import AddNode, EventType, KeyState
from keysvc.devtools import emulator
from keysvc.runtime import load_settings, open_service
from keysvc.service.keys import KeyService
from tests.agent.stack import BUCKET, Keysvc, Node, read_source
from tests.servers import Server, run_cli, wait_until

pytestmark = pytest.mark.integration

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Wiring:
    """A queue fed by an EventBridge rule, plus clients for both."""

    queue_url: str
    dlq_url: str
    sqs: Any
    events: Any
    endpoint: str

    def publish_state(self, instance: str, state: str) -> None:
        """Publish an EC2 state-change event as EC2 itself would."""
        response = self.events.put_events(
            Entries=[
                {
                    "Source": "aws.ec2",
                    "DetailType": "EC2 Instance State-change Notification",
                    "Detail": json.dumps({"instance-id": instance, "state": state}),
                    "Resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance}"],
                }
            ]
        )
        assert response["FailedEntryCount"] == 0

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages on the queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
def wiring(moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wiring]:
    """A fresh queue (with a dead-letter queue) and a rule with the README's pattern targeting it."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    session = boto3.session.Session(region_name="us-east-1")
    sqs = session.client("sqs", endpoint_url=moto_server.url)
    events = session.client("events", endpoint_url=moto_server.url)
    suffix = uuid.uuid4().hex[:12]
    dlq_url = sqs.create_queue(QueueName=f"nodelogs-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"nodelogs-events-{suffix}",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = f"nodelogs-terminations-{suffix}"
    events.put_rule(Name=rule, EventPattern=json.dumps(STATE_CHANGE_PATTERN), State="ENABLED")
    events.put_targets(Rule=rule, Targets=[{"Id": "keysvc", "Arn": queue_arn}])
    yield Wiring(queue_url, dlq_url, sqs, events, moto_server.url)
    events.remove_targets(Rule=rule, Ids=["keysvc"])
    events.delete_rule(Name=rule)
    sqs.delete_queue(QueueUrl=queue_url)
    sqs.delete_queue(QueueUrl=dlq_url)


def _instance() -> str:
    return "i-" + uuid.uuid4().hex[:17]


def _issue(state_dir: Path, instance: str) -> tuple[KeyService, str]:
    service = open_service(load_settings(None, str(state_dir)), create=True)
    issued = service.add_node(
        AddNode(
            cluster="prod",
            node=f"node-{instance[2:10]}",
            instance=instance,
            region="local",
            operation_id=f"op-{instance}",
            started_at=time.time(),
        ),
        actor="provisioner",
    )
    return service, issued.record.key_id


def _consume_args(state_dir: Path, wiring: Wiring, *extra: str) -> list[str]:
    return [
        "keysvc", "--state-dir", str(state_dir), "events", "consume", "--queue-url", wiring.queue_url,
        "--endpoint-url", wiring.endpoint, "--aws-region", "us-east-1", "--wait-seconds", "1", *extra,
    ]  # fmt: skip


def _revocations(service: KeyService, key_id: str) -> list[Any]:
    return [r for r in service.audit.records(key_id=key_id) if r.event.event == EventType.REVOKED]


def test_terminated_event_revokes_the_key_and_is_deleted(tmp_path: Path, wiring: Wiring) -> None:
    """A terminated event put to EventBridge reaches the queue, revokes the key and leaves no message."""
    instance = _instance()
    service, key_id = _issue(tmp_path, instance)
    other_service, other_key = _issue(tmp_path, _instance())
    wiring.publish_state(instance, "running")  # filtered out by the rule's pattern
    wiring.publish_state(instance, "terminated")
    assert wiring.counts() == (1, 0)

    result = run_cli(_consume_args(tmp_path, wiring, "--once"), env={**os.environ, **AWS_ENV})
    counters = json.loads(result.stdout)
    assert counters["revoked_keys"] == 1
    assert counters["deleted"] == 1
    assert counters["malformed"] == 0

    assert service.get_key(key_id).state == KeyState.REVOKED
    assert other_service.get_key(other_key).state == KeyState.LIVE
    [record] = _revocations(service, key_id)
    assert record.event.actor == "aws:events"
    assert record.event.reason == "instance terminated"
    assert wiring.counts() == (0, 0)


def test_redelivered_event_is_harmless(tmp_path: Path, wiring: Wiring) -> None:
    """The same termination delivered twice (shutting-down, then terminated) revokes and audits only once."""
    instance = _instance()
    service, key_id = _issue(tmp_path, instance)
    wiring.publish_state(instance, "shutting-down")
    wiring.publish_state(instance, "terminated")
    result = run_cli(_consume_args(tmp_path, wiring, "--once"), env={**os.environ, **AWS_ENV})
    counters = json.loads(result.stdout)
    assert (counters["revoked_messages"], counters["revoked_keys"], counters["deleted"]) == (2, 1, 2)
    assert len(_revocations(service, key_id)) == 1
    assert wiring.counts() == (0, 0)


def test_malformed_message_stays_for_the_redrive_policy(tmp_path: Path, wiring: Wiring) -> None:
    """A malformed message is counted and left on the queue, and the valid one next to it is still handled."""
    instance = _instance()
    service, key_id = _issue(tmp_path, instance)
    wiring.sqs.send_message(QueueUrl=wiring.queue_url, MessageBody='{"detail-type": "who knows"}')
    wiring.publish_state(instance, "terminated")
    result = run_cli(_consume_args(tmp_path, wiring, "--once"), env={**os.environ, **AWS_ENV})
    counters = json.loads(result.stdout)
    assert (counters["malformed"], counters["revoked_keys"], counters["deleted"]) == (1, 1, 1)
    assert "event_malformed" in result.stderr
    assert service.get_key(key_id).state == KeyState.REVOKED
    assert sum(wiring.counts()) == 1
    time.sleep(1.2)  # the visibility timeout: the message is back, untouched
    again = wiring.sqs.receive_message(QueueUrl=wiring.queue_url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in again] == ['{"detail-type": "who knows"}']


def test_long_running_consumer_revokes_and_stops_on_sigterm(tmp_path: Path, wiring: Wiring) -> None:
    """`keysvc events consume` keeps polling, revokes an event that arrives later, and exits 0 on SIGTERM."""
    instance = _instance()
    service, key_id = _issue(tmp_path, instance)
    binary = Path(sys.executable).parent / "keysvc"
    process = subprocess.Popen(
        [str(binary), *_consume_args(tmp_path, wiring)[1:]],
        env={**os.environ, **AWS_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # at least one empty long poll first
        wiring.publish_state(instance, "terminated")
        wait_until(lambda: service.get_key(key_id).state == KeyState.REVOKED, timeout=20, what="revocation")
        wait_until(lambda: wiring.counts() == (0, 0), timeout=10, what="message deletion")
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["revoked_keys"] == 1


def test_consumer_thread_for_keysvc_serve(tmp_path: Path, wiring: Wiring) -> None:
    """start_consumer_thread (what `keysvc serve` runs) revokes from the same queue and stops when told."""
    instance = _instance()
    service, key_id = _issue(tmp_path, instance)
    config = EventsConfig(queue_url=wiring.queue_url, endpoint_url=wiring.endpoint, wait_seconds=1)
    stop = threading.Event()
    thread = start_consumer_thread(service, config, stop)
    try:
        wiring.publish_state(instance, "shutting-down")
        wait_until(lambda: service.get_key(key_id).state == KeyState.REVOKED, timeout=20, what="revocation")
        assert _revocations(service, key_id)[0].event.reason == "instance shutting-down"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_termination_stops_the_running_agent(tmp_path: Path, wiring: Wiring, fake_gcs: Server) -> None:
    """End to end: the agent ships logs, the instance terminates, keysvc serve revokes, the agent exits 11."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    keysvc = Keysvc(tmp_path / "keysvc", fake_gcs.url).prepare()
    with (keysvc.state / "keysvc.toml").open("a") as config:
        config.write(
            f'[events]\nqueue_url = "{wiring.queue_url}"\nendpoint_url = "{wiring.endpoint}"\n'
            'aws_region = "us-east-1"\nin_serve = true\nwait_seconds = 1\n'
        )
    keysvc.start()
    log = tmp_path / "boot.log"
    log.write_bytes(b"cloud-init: starting\n")
    node = Node(tmp_path / "node", keysvc, "events-node", (str(log),)).provision()
    try:
        process = node.start("chunk_seconds = 0.3\n")
        wait_until(
            lambda: read_source(fake_gcs.url, node.name, str(log)).get(1) == b"cloud-init: starting\n",
            timeout=30, what="first upload",
        )  # fmt: skip
        wiring.publish_state("i-0123456789abcdef0", "terminated")  # the instance Keysvc.issue names
        with log.open("ab") as handle:
            handle.write(b"kubelet: still booting\n")
        assert process.wait(timeout=30) == 11
        assert not node.key_file.exists()
        wait_until(lambda: wiring.counts() == (0, 0), timeout=10, what="message deletion")
    finally:
        node.kill9()
        keysvc.stop()
    service = open_service(load_settings(None, str(keysvc.state)))
    assert service.get_key(node.key_id).state == KeyState.REVOKED
    assert _revocations(service, node.key_id)[0].event.actor == "aws:events"


def test_lifecycle_action_revokes_and_keeps_the_message_until_completed(
    tmp_path: Path, wiring: Wiring
) -> None:
    """An ASG terminate lifecycle action via the README's rule revokes; the message stays until completed.

    moto 5.2 answers CompleteLifecycleAction with HTTP 500 (not implemented), which is exactly the
    failure case: the revocation is committed, the message is kept for a retry. (Completion with
    CONTINUE and the "already completed" case are covered by the unit tests.)
    """
    instance = _instance()
    service, key_id = _issue(tmp_path, instance)
    rule = f"nodelogs-lifecycle-{uuid.uuid4().hex[:12]}"
    queue_arn = wiring.sqs.get_queue_attributes(QueueUrl=wiring.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    wiring.events.put_rule(Name=rule, EventPattern=json.dumps(LIFECYCLE_PATTERN), State="ENABLED")
    wiring.events.put_targets(Rule=rule, Targets=[{"Id": "keysvc", "Arn": queue_arn}])
    detail = {
        "LifecycleActionToken": str(uuid.uuid4()),
        "AutoScalingGroupName": "nodes",
        "LifecycleHookName": "nodelogs-revoke",
        "EC2InstanceId": instance,
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
    }
    wiring.events.put_events(
        Entries=[
            {
                "Source": "aws.autoscaling",
                "DetailType": "EC2 Instance-terminate Lifecycle Action",
                "Detail": json.dumps(detail),
            }
        ]
    )
    try:
        config = EventsConfig(queue_url=wiring.queue_url, endpoint_url=wiring.endpoint, wait_seconds=1)
        sqs, autoscaling = make_clients(config)
        consumer = EventConsumer(service, config, sqs, autoscaling)
        assert consumer.poll_once() == 1
    finally:
        wiring.events.remove_targets(Rule=rule, Ids=["keysvc"])
        wiring.events.delete_rule(Name=rule)
    assert service.get_key(key_id).state == KeyState.REVOKED
    assert (consumer.counters.revoked_keys, consumer.counters.failed, consumer.counters.deleted) == (1, 1, 0)
    assert sum(wiring.counts()) == 1


def test_addnode_without_instance_then_bind_then_event_revokes(tmp_path: Path, wiring: Wiring) -> None:
    """AddNode without instance: an event before `keys bind` revokes nothing, the one after it revokes."""
    instance = _instance()
    service = open_service(load_settings(None, str(tmp_path)), create=True)
    issued = service.add_node(
        AddNode(
            cluster="prod",
            node="node-unbound",
            instance=None,
            region="local",
            operation_id=f"op-{uuid.uuid4().hex}",
            started_at=time.time(),
        ),
        actor="provisioner",
    )
    key_id = issued.record.key_id
    env = {**os.environ, **AWS_ENV}

    wiring.publish_state(instance, "terminated")  # RunInstances returned, but nobody bound the id yet
    counters = json.loads(run_cli(_consume_args(tmp_path, wiring, "--once"), env=env).stdout)
    assert (counters["revoked_keys"], counters["deleted"]) == (0, 1)
    assert service.get_key(key_id).state == KeyState.LIVE

    bound = run_cli(
        ["keysvc", "--state-dir", str(tmp_path), "keys", "bind", "--cluster", "prod",
         "--node", "node-unbound", "--instance", instance, "-o", "json"]
    )  # fmt: skip
    assert json.loads(bound.stdout) == {"key_id": key_id, "instance": instance}

    wiring.publish_state(instance, "shutting-down")
    counters = json.loads(run_cli(_consume_args(tmp_path, wiring, "--once"), env=env).stdout)
    assert (counters["revoked_keys"], counters["deleted"]) == (1, 1)
    assert service.get_key(key_id).state == KeyState.REVOKED
    kinds = [r.event.event for r in service.audit.records(key_id=key_id)]
    assert kinds == [EventType.ISSUED, EventType.BOUND, EventType.REVOKED]
    assert _revocations(service, key_id)[0].event.instance == instance
    assert wiring.counts() == (0, 0)
