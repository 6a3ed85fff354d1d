"""Unit tests for keysvc.aws.events: SQS message bodies become terminations, ignorable events or errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keysvc.aws.events import (
    LIFECYCLE_PATTERN,
    STATE_CHANGE_PATTERN,
    Ignored,
    LifecycleAction,
    Termination,
    parse_message,
)
from keysvc.errors import EventError

INSTANCE = "i-0123456789abcdef0"


def state_change(state: str, **extra: Any) -> dict[str, Any]:
    """An EventBridge EC2 state-change event as AWS documents it."""
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-28T08:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{INSTANCE}"],
        "detail": {"instance-id": INSTANCE, "state": state},
        **extra,
    }


LIFECYCLE_DETAIL = {
    "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
    "AutoScalingGroupName": "nodes-a",
    "LifecycleHookName": "nodelogs-revoke",
    "EC2InstanceId": INSTANCE,
    "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
    "NotificationMetadata": "",
}


@pytest.mark.parametrize("state", ["shutting-down", "terminated"])
def test_terminating_states_revoke(state: str) -> None:
    """shutting-down and terminated state changes become a Termination with a readable reason."""
    assert parse_message(json.dumps(state_change(state))) == Termination(
        instance=INSTANCE, reason=f"instance {state}", region="us-east-1"
    )


def test_account_is_not_required() -> None:
    """An event without `account` (as moto delivers it) is still understood."""
    event = state_change("terminated")
    del event["account"]
    assert isinstance(parse_message(json.dumps(event)), Termination)


@pytest.mark.parametrize("state", ["pending", "running", "stopping", "stopped"])
def test_other_states_are_ignored(state: str) -> None:
    """Other instance states are well-formed but ask for nothing."""
    outcome = parse_message(json.dumps(state_change(state)))
    assert isinstance(outcome, Ignored)
    assert state in outcome.why


def test_eventbridge_lifecycle_action_carries_what_completion_needs() -> None:
    """The EventBridge terminate lifecycle action yields the group, hook and token to complete it."""
    event = {
        "version": "0",
        "id": "468fba33-5e15-4fd5-9a44-dd65bb38c19e",
        "detail-type": "EC2 Instance-terminate Lifecycle Action",
        "source": "aws.autoscaling",
        "region": "eu-west-1",
        "detail": LIFECYCLE_DETAIL,
    }
    outcome = parse_message(json.dumps(event))
    assert outcome == Termination(
        instance=INSTANCE,
        reason="instance terminating (auto scaling lifecycle action)",
        region="eu-west-1",
        lifecycle=LifecycleAction(
            group="nodes-a", hook="nodelogs-revoke", token="87654321-4321-4321-4321-210987654321"
        ),
    )


def test_direct_hook_notification_is_understood() -> None:
    """A lifecycle hook that posts straight to SQS (no EventBridge envelope) is a Termination too."""
    body = {"Origin": "AutoScalingGroup", "Service": "AWS Auto Scaling", **LIFECYCLE_DETAIL}
    outcome = parse_message(json.dumps(body))
    assert isinstance(outcome, Termination)
    assert outcome.lifecycle is not None
    assert outcome.lifecycle.hook == "nodelogs-revoke"


def test_test_notification_and_launch_transition_are_ignored() -> None:
    """Auto Scaling's test notification and launching transitions are ignorable."""
    test = {"Event": "autoscaling:TEST_NOTIFICATION", "AutoScalingGroupName": "nodes-a"}
    assert isinstance(parse_message(json.dumps(test)), Ignored)
    launching = {**LIFECYCLE_DETAIL, "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING"}
    assert isinstance(parse_message(json.dumps(launching)), Ignored)


def test_sns_wrapped_event_is_unwrapped() -> None:
    """An event delivered through SNS (a JSON Message inside a Notification) is unwrapped."""
    body = {"Type": "Notification", "Message": json.dumps(state_change("terminated"))}
    assert parse_message(json.dumps(body)) == Termination(
        instance=INSTANCE, reason="instance terminated", region="us-east-1"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"hello": "world"}), "not an EventBridge event"),
        (json.dumps({**state_change("terminated"), "detail-type": "AWS API Call via CloudTrail"}), "unknown"),
        (json.dumps({**state_change("terminated"), "source": "evil.example"}), "unexpected source"),
        (json.dumps({**state_change("terminated"), "detail": "x"}), "detail is not a JSON object"),
        (json.dumps({**state_change("terminated"), "detail": {"instance-id": INSTANCE}}), "detail.state"),
        (json.dumps({**state_change("terminated"), "detail": {"state": "terminated"}}), "instance id"),
        (
            json.dumps(
                {**state_change("terminated"), "detail": {"state": "terminated", "instance-id": "i-x"}}
            ),
            "instance id",
        ),
        (json.dumps({**LIFECYCLE_DETAIL, "LifecycleActionToken": ""}), "LifecycleActionToken"),
        (json.dumps({**LIFECYCLE_DETAIL, "LifecycleTransition": 7}), "LifecycleTransition"),
        ("x" * (256 * 1024 + 1), "256 KiB"),
    ],
)
def test_malformed_messages_raise_event_error(body: str, message: str) -> None:
    """Anything malformed or unknown raises EventError with a precise, bounded message."""
    with pytest.raises(EventError, match=message) as info:
        parse_message(body)
    assert len(str(info.value)) < 200


def test_error_message_does_not_echo_long_untrusted_values() -> None:
    """An unknown detail-type is quoted in the error only as a short printable prefix."""
    body = json.dumps({"detail-type": "A" * 5000 + "\n\x00"})
    with pytest.raises(EventError) as info:
        parse_message(body)
    assert "A" * 64 in str(info.value)
    assert "A" * 65 not in str(info.value)


def test_readme_documents_the_rule_patterns_the_consumer_expects() -> None:
    """The README's EventBridge rule patterns are exactly keysvc.aws.events' patterns."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for pattern in (STATE_CHANGE_PATTERN, LIFECYCLE_PATTERN):
        assert json.dumps(pattern, indent=2) in readme
