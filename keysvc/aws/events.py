"""Understand EC2 termination events delivered to SQS. Pure: no I/O, no boto3.

:func:`parse_message` turns one SQS message body into what the consumer must do:

- a :class:`Termination`: revoke the instance's key, and, for an Auto Scaling lifecycle action,
  complete that action with ``CONTINUE`` afterwards;
- an :class:`Ignored` event: well-formed and of a kind we know, but nothing to do (another
  instance state, an Auto Scaling test notification); the consumer deletes it;
- :class:`~keysvc.errors.EventError` for anything malformed or unknown; the consumer leaves it on
  the queue for the redrive policy.

Shapes understood (``account`` is never required: moto's deliveries lack it):

- EventBridge ``EC2 Instance State-change Notification`` from ``aws.ec2``, with
  ``detail.instance-id`` and ``detail.state``; ``shutting-down`` and ``terminated`` are terminations;
- EventBridge ``EC2 Instance-terminate Lifecycle Action`` from ``aws.autoscaling``, with
  ``detail.EC2InstanceId``, ``AutoScalingGroupName``, ``LifecycleHookName`` and
  ``LifecycleActionToken``;
- the same lifecycle action as an Auto Scaling hook posts it straight to SQS (top-level
  ``LifecycleTransition: autoscaling:EC2_INSTANCE_TERMINATING``), and its ``TEST_NOTIFICATION``;
- any of these wrapped in an SNS notification (``Type: Notification`` with a JSON ``Message``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from keysvc.core import ids
from keysvc.errors import EventError, InvalidInput

STATE_CHANGE = "EC2 Instance State-change Notification"
LIFECYCLE_ACTION = "EC2 Instance-terminate Lifecycle Action"
TERMINATING_STATES = frozenset({"shutting-down", "terminated"})
TERMINATING_TRANSITION = "autoscaling:EC2_INSTANCE_TERMINATING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"
ACTOR = "aws:events"

#: The EventBridge rules that feed the queue (README, "Deploying"): one per kind of event.
STATE_CHANGE_PATTERN: dict[str, object] = {
    "source": ["aws.ec2"],
    "detail-type": [STATE_CHANGE],
    "detail": {"state": sorted(TERMINATING_STATES)},
}
LIFECYCLE_PATTERN: dict[str, object] = {
    "source": ["aws.autoscaling"],
    "detail-type": [LIFECYCLE_ACTION],
}
MAX_BODY_CHARS = 256 * 1024  # SQS's own message size limit


@dataclass(frozen=True, slots=True)
class LifecycleAction:
    """An Auto Scaling terminate lifecycle action that waits for ``complete_lifecycle_action``."""

    group: str
    hook: str
    token: str


@dataclass(frozen=True, slots=True)
class Termination:
    """An instance is going away: revoke its key (then complete ``lifecycle``, if any)."""

    instance: str
    reason: str
    region: str | None = None
    lifecycle: LifecycleAction | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event that asks for nothing; safe to delete."""

    why: str


def parse_message(body: str) -> Termination | Ignored:
    """Classify one SQS message body; raise :class:`EventError` if it is malformed or unknown."""
    document = _json_object(body)
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        document = _json_object(document["Message"])
    detail_type = document.get("detail-type")
    if detail_type == STATE_CHANGE:
        return _state_change(document)
    if detail_type == LIFECYCLE_ACTION:
        return _lifecycle(_mapping(document.get("detail"), "detail"), document.get("region"))
    if document.get("Event") == TEST_NOTIFICATION:
        return Ignored("auto scaling test notification")
    if "LifecycleTransition" in document:
        return _lifecycle(document, None)
    if isinstance(detail_type, str):
        raise EventError(f"unknown event detail-type {_short(detail_type)!r}")
    raise EventError("not an EventBridge event or an Auto Scaling lifecycle notification")


def _state_change(document: dict[str, Any]) -> Termination | Ignored:
    if document.get("source") != "aws.ec2":
        raise EventError(f"{STATE_CHANGE} from unexpected source {_short(document.get('source'))!r}")
    detail = _mapping(document.get("detail"), "detail")
    state = detail.get("state")
    if not isinstance(state, str):
        raise EventError("state-change event without a detail.state string")
    instance = _instance(detail.get("instance-id"))
    if state not in TERMINATING_STATES:
        return Ignored(f"instance state {_short(state)!r} is not a termination")
    return Termination(instance=instance, reason=f"instance {state}", region=_region(document.get("region")))


def _lifecycle(detail: dict[str, Any], region: object) -> Termination | Ignored:
    transition = detail.get("LifecycleTransition")
    if transition != TERMINATING_TRANSITION:
        if isinstance(transition, str) and transition.startswith("autoscaling:"):
            return Ignored(f"lifecycle transition {_short(transition)!r} is not a termination")
        raise EventError("lifecycle action without a known LifecycleTransition")
    action = LifecycleAction(
        group=_text(detail.get("AutoScalingGroupName"), "AutoScalingGroupName", 255),
        hook=_text(detail.get("LifecycleHookName"), "LifecycleHookName", 255),
        token=_text(detail.get("LifecycleActionToken"), "LifecycleActionToken", 64),
    )
    return Termination(
        instance=_instance(detail.get("EC2InstanceId")),
        reason="instance terminating (auto scaling lifecycle action)",
        region=_region(region),
        lifecycle=action,
    )


def _json_object(text: str) -> dict[str, Any]:
    if not isinstance(text, str) or len(text) > MAX_BODY_CHARS:
        raise EventError("message body is not text of at most 256 KiB")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise EventError("message body is not JSON") from exc
    return _mapping(document, "message body")


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"{what} is not a JSON object")
    return value


def _instance(value: object) -> str:
    try:
        return ids.instance_id(value)
    except InvalidInput as exc:
        raise EventError("event without a valid EC2 instance id") from exc


def _text(value: object, field: str, max_len: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
        raise EventError(f"lifecycle action without a valid {field}")
    return value


def _region(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 32 and value.isprintable() else None


def _short(value: object) -> str:
    """A bounded, printable rendering of an untrusted value for an error message."""
    text = value if isinstance(value, str) else repr(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text[:64])
