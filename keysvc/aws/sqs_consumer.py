"""The SQS adapter for termination events: long-poll, revoke, complete the lifecycle action, delete.

The decisions live in :mod:`keysvc.aws.events` (pure); this module does the I/O around them.

For each message:

1. :func:`keysvc.aws.events.parse_message` classifies it. Malformed or unknown messages are logged
   and counted and stay on the queue: after ``maxReceiveCount`` receives the queue's redrive
   policy moves them to the dead-letter queue, where an operator can read them.
2. A termination revokes every live key of the instance through the service, which commits the
   revocation and its audit event in one transaction before it returns.
3. An Auto Scaling lifecycle action is then completed with ``CONTINUE``. "No active Lifecycle
   Action found" means it already was (a redelivery, or the hook's heartbeat ran out), so that is
   success too.
4. Only then is the message deleted. If anything before fails, the message comes back after its
   visibility timeout and the whole handling repeats; revocation is idempotent (a second one finds
   no live key and revokes nothing), so at-least-once, unordered delivery is harmless.

The consumer runs alone (``keysvc events consume``) or as a daemon thread inside ``keysvc serve``
(:func:`start_consumer_thread`). AWS errors on receive never stop it: it logs them and backs off.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import structlog
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from keysvc.aws.events import ACTOR, Ignored, LifecycleAction, Termination, parse_message
from keysvc.config import EventsConfig
from keysvc.errors import ConfigError, EventError, KeysvcError

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger(__name__)

MAX_MESSAGES = 10
RECEIVE_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


class Revoker(Protocol):
    """The part of the keysvc service the consumer needs."""

    def revoke(self, *, reason: str, actor: str, instance: str) -> Sequence[str]:
        """Revoke every live key of ``instance``, commit, and return the revoked key ids."""
        ...


class EventObserver(Protocol):
    """Told what the consumer did with each message (keysvc's metrics listen here)."""

    def event(self, outcome: str, age_seconds: float | None) -> None:
        """One message handled: ``outcome`` is revoked, ignored, malformed or failed."""
        ...


@dataclass
class Counters:
    """What the consumer has done since it started; read by tests, logs and metrics."""

    received: int = 0
    revoked_messages: int = 0
    revoked_keys: int = 0
    lifecycle_completed: int = 0
    ignored: int = 0
    malformed: int = 0
    failed: int = 0
    deleted: int = 0
    receive_errors: int = 0


class EventConsumer:
    """Handles batches of messages from one queue; :meth:`run` loops until told to stop."""

    def __init__(
        self,
        service: Revoker,
        config: EventsConfig,
        sqs: SQSClient,
        autoscaling: AutoScalingClient,
        *,
        wait: Callable[[float], bool] | None = None,
        observer: EventObserver | None = None,
    ) -> None:
        if not config.queue_url:
            raise ConfigError("no events queue configured (events.queue_url / KEYSVC_EVENTS_QUEUE_URL)")
        self.service = service
        self.config = config
        self.sqs = sqs
        self.autoscaling = autoscaling
        self.counters = Counters()
        self._wait = wait
        self._observer = observer

    def poll_once(self) -> int:
        """Receive one batch (long-polling up to ``wait_seconds``), handle it, return its size."""
        response = self.sqs.receive_message(
            QueueUrl=self.config.queue_url,
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=self.config.wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        messages = response.get("Messages", [])
        for message in messages:
            self.handle(message)
        return len(messages)

    def handle(self, message: MessageTypeDef) -> bool:
        """Act on one message; return True when it was deleted. The observer hears its outcome and age."""
        before = dataclasses.replace(self.counters)
        deleted = self._handle(message)
        if self._observer is not None:
            self._observer.event(_outcome(before, self.counters), _age(message))
        return deleted

    def _handle(self, message: MessageTypeDef) -> bool:
        self.counters.received += 1
        message_id = message.get("MessageId", "?")
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        bound = log.bind(message_id=message_id, receive_count=receives)
        try:
            outcome = parse_message(message.get("Body", ""))
        except EventError as exc:
            self.counters.malformed += 1
            bound.warning("event_malformed", error=str(exc), action="left for the redrive policy")
            return False
        if isinstance(outcome, Ignored):
            self.counters.ignored += 1
            bound.info("event_ignored", why=outcome.why)
            return self._delete(message, bound)
        return self._terminate(message, outcome, bound)

    def _terminate(self, message: MessageTypeDef, event: Termination, bound: Any) -> bool:
        bound = bound.bind(instance=event.instance, reason=event.reason, event_region=event.region)
        try:
            revoked = list(self.service.revoke(reason=event.reason, actor=ACTOR, instance=event.instance))
        except KeysvcError as exc:
            self.counters.failed += 1
            bound.error("revoke_failed", error=str(exc), error_type=type(exc).__name__)
            return False
        self.counters.revoked_messages += 1
        self.counters.revoked_keys += len(revoked)
        bound.info("instance_keys_revoked", key_ids=revoked)
        if event.lifecycle is not None and not self._complete(event.instance, event.lifecycle, bound):
            return False
        return self._delete(message, bound)

    def _complete(self, instance: str, action: LifecycleAction, bound: Any) -> bool:
        try:
            self.autoscaling.complete_lifecycle_action(
                LifecycleHookName=action.hook,
                AutoScalingGroupName=action.group,
                LifecycleActionToken=action.token,
                LifecycleActionResult="CONTINUE",
                InstanceId=instance,
            )
        except ClientError as exc:
            if _already_completed(exc):
                bound.info("lifecycle_action_already_completed", group=action.group, hook=action.hook)
                return True
            self.counters.failed += 1
            bound.error("lifecycle_completion_failed", error=_aws_error(exc))
            return False
        except (BotoCoreError, ResponseParserError) as exc:  # the latter: an error page instead of XML
            self.counters.failed += 1
            bound.error("lifecycle_completion_failed", error=type(exc).__name__)
            return False
        self.counters.lifecycle_completed += 1
        bound.info("lifecycle_action_completed", group=action.group, hook=action.hook)
        return True

    def _delete(self, message: MessageTypeDef, bound: Any) -> bool:
        try:
            self.sqs.delete_message(QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            # The message comes back later and is handled again; that is safe, only wasteful.
            self.counters.failed += 1
            bound.error("event_delete_failed", error=_aws_error(exc))
            return False
        self.counters.deleted += 1
        return True

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; errors while receiving are logged and retried with backoff."""
        wait = self._wait or stop.wait
        failures = 0
        log.info("event_consumer_started", queue_url=self.config.queue_url)
        while not stop.is_set():
            try:
                self.poll_once()
            except (ClientError, BotoCoreError, ResponseParserError) as exc:
                self.counters.receive_errors += 1
                delay = RECEIVE_BACKOFF_SECONDS[min(failures, len(RECEIVE_BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning("event_receive_failed", error=_aws_error(exc), retry_in_seconds=delay)
                wait(delay)
                continue
            except Exception:  # a bug on one message must not kill the consumer thread (logged)
                self.counters.failed += 1
                delay = RECEIVE_BACKOFF_SECONDS[min(failures, len(RECEIVE_BACKOFF_SECONDS) - 1)]
                failures += 1
                log.exception("event_consumer_error", retry_in_seconds=delay)
                wait(delay)
                continue
            failures = 0
        log.info("event_consumer_stopped", **vars(self.counters))


def _already_completed(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") == "ValidationError" and "No active Lifecycle Action" in error.get("Message", "")


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def _outcome(before: Counters, after: Counters) -> str:
    """What handling one message did, from how the counters moved."""
    if after.malformed > before.malformed:
        return "malformed"
    if after.failed > before.failed:
        return "failed"
    if after.ignored > before.ignored:
        return "ignored"
    return "revoked"


def _age(message: MessageTypeDef) -> float | None:
    """Seconds since SQS accepted the message (its ``SentTimestamp``), if SQS said."""
    sent = message.get("Attributes", {}).get("SentTimestamp")
    try:
        return time.time() - int(sent) / 1000.0 if sent is not None else None
    except ValueError:
        return None


def make_clients(config: EventsConfig) -> tuple[SQSClient, AutoScalingClient]:
    """Build the SQS and Auto Scaling clients from ``config`` (credentials from the usual chain)."""
    endpoint = config.endpoint_url or None
    session = boto3.session.Session(region_name=config.aws_region)
    # A long poll holds the connection for wait_seconds: the read timeout must outlast it.
    client_config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=config.wait_seconds + 10,
    )
    sqs = session.client("sqs", endpoint_url=endpoint, config=client_config)
    autoscaling = session.client("autoscaling", endpoint_url=endpoint, config=client_config)
    return sqs, autoscaling


def consume_forever(
    service: Revoker,
    config: EventsConfig,
    stop: threading.Event,
    client: SQSClient | None = None,
    autoscaling: AutoScalingClient | None = None,
    *,
    observer: EventObserver | None = None,
) -> EventConsumer:
    """Consume termination events until ``stop`` is set; return the consumer with its counters."""
    if client is None or autoscaling is None:
        default_sqs, default_autoscaling = make_clients(config)
        client = client or default_sqs
        autoscaling = autoscaling or default_autoscaling
    consumer = EventConsumer(service, config, client, autoscaling, observer=observer)
    consumer.run(stop)
    return consumer


def start_consumer_thread(
    service: Revoker, config: EventsConfig, stop: threading.Event, observer: EventObserver | None = None
) -> threading.Thread:
    """Run :func:`consume_forever` in a daemon thread (``keysvc serve`` with ``events.in_serve``)."""
    if not config.queue_url:
        raise ConfigError("no events queue configured (events.queue_url / KEYSVC_EVENTS_QUEUE_URL)")
    thread = threading.Thread(
        target=consume_forever,
        args=(service, config, stop),
        kwargs={"observer": observer},
        name="keysvc-events",
        daemon=True,
    )
    thread.start()
    return thread
