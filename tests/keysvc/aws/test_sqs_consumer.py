"""Unit tests for keysvc.aws.sqs_consumer with in-memory SQS, Auto Scaling and service fakes (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from structlog.testing import capture_logs

from keysvc.aws.sqs_consumer import EventConsumer
from keysvc.config import EventsConfig
from keysvc.errors import ConfigError, StoreUnavailable

QUEUE = "http://sqs.test/000000000000/events"
CONFIG = EventsConfig(queue_url=QUEUE, wait_seconds=0)
INSTANCE = "i-0123456789abcdef0"


def terminated(instance: str = INSTANCE) -> str:
    """The body of an EC2 terminated state-change event."""
    return json.dumps(
        {
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "region": "us-east-1",
            "detail": {"instance-id": instance, "state": "terminated"},
        }
    )


def lifecycle() -> str:
    """The body of an EventBridge Auto Scaling terminate lifecycle action."""
    return json.dumps(
        {
            "detail-type": "EC2 Instance-terminate Lifecycle Action",
            "source": "aws.autoscaling",
            "detail": {
                "LifecycleActionToken": "tok-1",
                "AutoScalingGroupName": "nodes",
                "LifecycleHookName": "nodelogs",
                "EC2InstanceId": INSTANCE,
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            },
        }
    )


@dataclass
class Journal:
    """Records the order in which the consumer does things."""

    steps: list[str] = field(default_factory=list)


@dataclass
class FakeService:
    """Revokes by instance, idempotently, like KeyService.revoke."""

    journal: Journal
    live: dict[str, list[str]] = field(default_factory=dict)
    error: Exception | None = None
    calls: list[dict[str, str]] = field(default_factory=list)

    def revoke(self, *, reason: str, actor: str, instance: str) -> Sequence[str]:
        """Revoke every live key of ``instance``."""
        self.calls.append({"reason": reason, "actor": actor, "instance": instance})
        if self.error is not None:
            raise self.error
        self.journal.steps.append(f"revoke {instance}")
        return self.live.pop(instance, [])


@dataclass
class FakeSqs:
    """A queue whose messages stay until deleted."""

    journal: Journal
    messages: dict[str, str] = field(default_factory=dict)
    receive_errors: int = 0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        """Return every message still on the queue."""
        assert kwargs["QueueUrl"] == QUEUE
        if self.receive_errors:
            self.receive_errors -= 1
            raise EndpointConnectionError(endpoint_url=QUEUE)
        batch = [
            {"MessageId": mid, "ReceiptHandle": f"rh-{mid}", "Body": body, "Attributes": {}}
            for mid, body in self.messages.items()
        ]
        return {"Messages": batch[: kwargs["MaxNumberOfMessages"]]}

    def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> None:  # noqa: N803 - boto3's names
        """Delete by receipt handle."""
        assert QueueUrl == QUEUE
        mid = ReceiptHandle.removeprefix("rh-")
        self.journal.steps.append(f"delete {mid}")
        del self.messages[mid]


@dataclass
class FakeAutoScaling:
    """Completes lifecycle actions, or fails as told."""

    journal: Journal
    error: ClientError | None = None
    calls: list[dict[str, str]] = field(default_factory=list)

    def complete_lifecycle_action(self, **kwargs: str) -> None:
        """Record the completion."""
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        self.journal.steps.append("complete")


def make(
    messages: dict[str, str], live: dict[str, list[str]] | None = None
) -> tuple[EventConsumer, FakeService, FakeSqs, FakeAutoScaling, Journal]:
    """A consumer wired to fresh fakes."""
    journal = Journal()
    service = FakeService(journal, live=dict(live or {}))
    sqs = FakeSqs(journal, messages=dict(messages))
    autoscaling = FakeAutoScaling(journal)
    consumer = EventConsumer(service, CONFIG, sqs, autoscaling)  # type: ignore[arg-type]
    return consumer, service, sqs, autoscaling, journal


def client_error(code: str, message: str) -> ClientError:
    """A botocore ClientError as AWS returns it."""
    return ClientError({"Error": {"Code": code, "Message": message}}, "CompleteLifecycleAction")


def test_termination_revokes_then_deletes() -> None:
    """A terminated event revokes the instance's keys as aws:events, and only then deletes the message."""
    consumer, service, sqs, _, journal = make({"m1": terminated()}, live={INSTANCE: ["k1"]})
    assert consumer.poll_once() == 1
    assert service.calls == [{"reason": "instance terminated", "actor": "aws:events", "instance": INSTANCE}]
    assert journal.steps == [f"revoke {INSTANCE}", "delete m1"]
    assert sqs.messages == {}
    assert (consumer.counters.revoked_messages, consumer.counters.revoked_keys) == (1, 1)


def test_redelivery_is_idempotent() -> None:
    """The same event delivered twice revokes nothing the second time and is deleted both times."""
    consumer, service, sqs, _, _ = make({"m1": terminated(), "m2": terminated()}, live={INSTANCE: ["k1"]})
    consumer.poll_once()
    assert consumer.counters.revoked_keys == 1
    assert consumer.counters.deleted == 2
    assert len(service.calls) == 2
    assert sqs.messages == {}


def test_failed_revocation_keeps_the_message() -> None:
    """When the store is down the message is not deleted, so it comes back after its visibility timeout."""
    consumer, service, sqs, _, _ = make({"m1": terminated()})
    service.error = StoreUnavailable("database is down")
    with capture_logs() as logs:
        consumer.poll_once()
    assert set(sqs.messages) == {"m1"}
    assert consumer.counters.failed == 1
    assert consumer.counters.deleted == 0
    assert [entry["event"] for entry in logs] == ["revoke_failed"]


def test_malformed_message_is_counted_logged_and_left() -> None:
    """A malformed message is logged and counted, stays on the queue, and does not stop the batch."""
    consumer, _, sqs, _, _ = make({"bad": "{not json", "m1": terminated()})
    with capture_logs() as logs:
        consumer.poll_once()
    assert set(sqs.messages) == {"bad"}
    assert consumer.counters.malformed == 1
    assert consumer.counters.revoked_messages == 1
    malformed = [entry for entry in logs if entry["event"] == "event_malformed"]
    assert malformed[0]["message_id"] == "bad"
    assert "not JSON" in malformed[0]["error"]


def test_ignored_event_is_deleted_without_revoking() -> None:
    """A running-state event is deleted and revokes nothing."""
    body = json.loads(terminated())
    body["detail"]["state"] = "running"
    consumer, service, sqs, _, _ = make({"m1": json.dumps(body)})
    consumer.poll_once()
    assert service.calls == []
    assert sqs.messages == {}
    assert consumer.counters.ignored == 1


def test_lifecycle_action_is_completed_with_continue_after_revoking() -> None:
    """A lifecycle action revokes, completes with CONTINUE, then deletes, in that order."""
    consumer, _, sqs, autoscaling, journal = make({"m1": lifecycle()}, live={INSTANCE: ["k1"]})
    consumer.poll_once()
    assert autoscaling.calls == [
        {
            "LifecycleHookName": "nodelogs",
            "AutoScalingGroupName": "nodes",
            "LifecycleActionToken": "tok-1",
            "LifecycleActionResult": "CONTINUE",
            "InstanceId": INSTANCE,
        }
    ]
    assert journal.steps == [f"revoke {INSTANCE}", "complete", "delete m1"]
    assert sqs.messages == {}
    assert consumer.counters.lifecycle_completed == 1


def test_already_completed_lifecycle_action_counts_as_done() -> None:
    """'No active Lifecycle Action found' (a redelivery) still lets the message be deleted."""
    consumer, _, sqs, autoscaling, _ = make({"m1": lifecycle()})
    autoscaling.error = client_error("ValidationError", "No active Lifecycle Action found with instance ID x")
    consumer.poll_once()
    assert sqs.messages == {}


def test_failed_completion_keeps_the_message() -> None:
    """Any other completion error keeps the message so the whole handling is retried."""
    consumer, _, sqs, autoscaling, _ = make({"m1": lifecycle()})
    autoscaling.error = client_error("Throttling", "Rate exceeded")
    consumer.poll_once()
    assert set(sqs.messages) == {"m1"}
    assert consumer.counters.failed == 1


def test_run_survives_receive_errors_with_backoff_and_stops() -> None:
    """Receive errors are counted and backed off (injected wait); the loop keeps going until stopped."""
    journal = Journal()
    sqs = FakeSqs(journal, messages={"m1": terminated()}, receive_errors=2)
    stop = threading.Event()
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    service = FakeService(journal)
    consumer = EventConsumer(service, CONFIG, sqs, FakeAutoScaling(journal), wait=wait)  # type: ignore[arg-type]
    original = sqs.receive_message

    def receive(**kwargs: Any) -> dict[str, Any]:
        if not sqs.messages:
            stop.set()
        return original(**kwargs)

    sqs.receive_message = receive  # type: ignore[method-assign]
    consumer.run(stop)
    assert waits == [1.0, 2.0]
    assert consumer.counters.receive_errors == 2
    assert sqs.messages == {}


def test_missing_queue_url_is_refused() -> None:
    """A consumer without a queue URL is a configuration error, not a silent no-op."""
    journal = Journal()
    with pytest.raises(ConfigError, match="no events queue configured"):
        EventConsumer(FakeService(journal), EventsConfig(), FakeSqs(journal), FakeAutoScaling(journal))  # type: ignore[arg-type]
