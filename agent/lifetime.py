"""How long the agent may run for its key, and when a refusal is final. Pure core, thin adapter.

The key's life is keysvc's to tell: once a grant answer arrives, its ``key_expires_at`` (mapped onto
the local monotonic clock through ``server_time``) is the deadline, and the bounds below no longer
matter. Until then the agent must still stop by the key's end, even when it never reaches keysvc
(a proxy it cannot use, a wrong endpoint, no network). Two upper bounds; the earlier one wins:

- ``NODELOGS_KEY_EXPIRES_AT``, the key's expiry in Unix seconds, which keysvc writes into
  ``agent.env`` when it renders the user data. It is read against the node's wall clock once, at
  start, and turned into a monotonic deadline.
- The one-hour budget (:data:`BUDGET_SECONDS`). A key lives 3600 s from the moment its AddNode
  began, and that moment precedes the agent's first start, so 3600 s of the node's time after the
  first start is always past the key's end, whatever the wall clock says. It is measured on
  ``CLOCK_BOOTTIME`` (monotonic, counts suspend, shared by every process of one boot) and kept in
  ``lifetime.json`` in the state directory:

  - restarts within one boot (same ``boot_id``) keep the first-start point, so a crash loop or a
    ``systemctl restart`` never resets the budget;
  - after a reboot (a new ``boot_id``, or ``BOOTTIME`` smaller than the last heartbeat) the clock
    starts again at 0: the time used in earlier boots (first point to last heartbeat) is carried
    over, and the new boot counts from its kernel start (``BOOTTIME`` 0), so the boot itself counts.
    What is not counted is the powered-off gap and at most one :data:`HEARTBEAT_SECONDS`; the wall
    clock bound covers those whenever the clock is set.

A refusal is final (the key file is removed) only when the agent can be sure no setting caused it.
The agent sends no cluster, node or region claims (keysvc takes them from the key's record, and a
setting that disagrees with the answer is a configuration error), so only the endpoint setting can
still turn a valid key into a 401: one that points at another keysvc, which does not know the key.
keysvc answers uniformly to anyone who has not proven possession of the key, and revocation deletes
the key's hash, so it cannot always tell the holder apart. Hence :func:`refusal_verdict`: final
when keysvc said so to the proven holder (``key_expired``/``key_revoked``), when this same endpoint
had accepted the key before (the record changed, not a setting), or when the key's life is over by
the bounds above. A first-contact refusal from an endpoint that never accepted the key keeps the
key file: a wrong endpoint must not burn a valid key, and a truly revoked key is cleaned up at its
expiry anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import structlog

from agent.config import AgentConfig
from agent.errors import AgentError, KeyRefused, StateCorrupt
from agent.private_files import atomic_write
from agent.transport import Requester, Response

BUDGET_SECONDS = 3600.0
MIN_TIMEOUT_SECONDS = 1.0
HEARTBEAT_SECONDS = 30.0
LIFETIME_FILE = "lifetime.json"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Ledger:
    """The time a key has used on this node, on the ``CLOCK_BOOTTIME`` clock of the current boot."""

    key_id: str
    boot_id: str
    #: ``BOOTTIME`` at which this boot's count began (the first start, or 0 after a reboot).
    boot_start: float
    #: Seconds used in earlier boots.
    used_before: float
    #: ``BOOTTIME`` of the last heartbeat written in this boot.
    last_seen: float
    #: The endpoint that accepted this key at least once, if any.
    accepted_by: str | None = None


def resume(previous: Ledger | None, key_id: str, boot_id: str, now: float) -> Ledger:
    """Return the ledger for a start at ``now`` (``BOOTTIME``), carrying over what earlier runs used."""
    if previous is None or previous.key_id != key_id:
        return Ledger(key_id, boot_id, boot_start=now, used_before=0.0, last_seen=now)
    if previous.boot_id == boot_id and now >= previous.last_seen:
        return replace(previous, last_seen=now)
    used = previous.used_before + max(0.0, previous.last_seen - previous.boot_start)
    return replace(previous, boot_id=boot_id, boot_start=0.0, used_before=used, last_seen=now)


def used(ledger: Ledger, now: float) -> float:
    """Seconds of the budget used by ``now`` (``BOOTTIME`` of the ledger's boot)."""
    return ledger.used_before + max(0.0, now - ledger.boot_start)


def seconds_left(
    ledger: Ledger,
    now: float,
    *,
    wall_now: float,
    expires_at: float | None,
    budget: float = BUDGET_SECONDS,
) -> float:
    """Seconds until the earlier of the budget's end and ``expires_at`` (Unix seconds, if known)."""
    left = budget - used(ledger, now)
    if expires_at is not None:
        left = min(left, expires_at - wall_now)
    return left


def refusal_verdict(ended: str | None, *, accepted_before: bool, past_deadline: bool) -> str | None:
    """How a refusal ends the key: ``"expired"``, ``"refused"`` (remove it) or ``None`` (keep it).

    Final only when keysvc said so to the key's proven holder (``ended``), when this endpoint had
    accepted the key before, or when the key's life is over anyway (the module docstring says why).
    """
    if ended is not None:
        return "expired" if ended == "expired" else "refused"
    if accepted_before:
        return "refused"
    return "expired" if past_deadline else None


def end_refused(
    refusal: KeyRefused, accepted_before: bool, past_deadline: bool, key_id: str, config: AgentConfig
) -> str:
    """Return the reason to finish the key with, or raise when the key must be kept (or expired)."""
    verdict = refusal_verdict(refusal.ended, accepted_before=accepted_before, past_deadline=past_deadline)
    if verdict is None:
        log.warning("key_refused_kept", key_id=key_id, endpoint=config.endpoint)
        raise KeyRefused(
            f"keysvc at {config.endpoint} refused key {key_id} and never accepted it: the key file is "
            "kept (a wrong endpoint must not burn a valid key; if the endpoint is right, the key was "
            "revoked and is removed at its expiry)"
        ) from refusal
    return verdict


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"  # then a reboot still shows as BOOTTIME going backwards


def _decode(path: Path, raw: bytes) -> Ledger:
    bad = StateCorrupt(f"lifetime file {path} cannot be trusted; remove it to start the count anew")
    try:
        data = json.loads(raw)
        ledger = Ledger(**{k: v for k, v in data.items() if k != "version"})
    except (ValueError, TypeError, AttributeError) as exc:
        raise bad from exc
    numbers = (ledger.boot_start, ledger.used_before, ledger.last_seen)
    valid = all(isinstance(value, int | float) and value >= 0 for value in numbers)
    if data.get("version") != 1 or not valid or not isinstance(ledger.key_id, str):
        raise bad
    return ledger


class Lifetime:
    """The ledger in ``<state_dir>/lifetime.json``: read at start, written durably (0600, atomic)."""

    def __init__(
        self,
        state_dir: Path,
        key_id: str,
        *,
        boottime: Callable[[], float] = _boottime,
        boot_id: Callable[[], str] = _boot_id,
    ) -> None:
        self.path = state_dir / LIFETIME_FILE
        self._key_id = key_id
        self._boottime = boottime
        self._boot_id = boot_id
        self._lock = threading.Lock()
        self._written_at = float("-inf")
        self.ledger = Ledger(key_id, "", 0.0, 0.0, 0.0)

    def start(self) -> Lifetime:
        """Load the ledger, carry it over to this run, and write it back before anything else runs."""
        try:
            previous: Ledger | None = _decode(self.path, self.path.read_bytes())
        except FileNotFoundError:
            previous = None
        except OSError as exc:
            raise StateCorrupt(f"lifetime file {self.path} cannot be read: {exc.strerror}") from exc
        with self._lock:
            now = self._boottime()
            try:
                self._save(resume(previous, self._key_id, self._boot_id(), now), now)
            except OSError as exc:  # the state dir was writable a moment ago: a full disk, say
                raise AgentError(f"lifetime file {self.path} cannot be written: {exc.strerror}") from exc
        return self

    def _save(self, ledger: Ledger, now: float) -> None:
        body = json.dumps({"version": 1, **asdict(ledger)}, sort_keys=True).encode()
        atomic_write(self.path, body)
        self.ledger = ledger
        self._written_at = now

    def _save_later_ok(self, ledger: Ledger, now: float) -> None:
        """A heartbeat or acceptance that cannot be written (a full disk) is logged, never fatal."""
        try:
            self._save(ledger, now)
        except OSError as exc:
            self.ledger = ledger  # kept in memory; the next write tries again
            log.warning("lifetime_not_saved", path=str(self.path), error=exc.strerror or str(exc))

    def seconds_left(self, *, wall_now: float, expires_at: float | None) -> float:
        """Seconds left by the bounds of the module docstring, from now."""
        return seconds_left(self.ledger, self._boottime(), wall_now=wall_now, expires_at=expires_at)

    def heartbeat(self) -> None:
        """Record that the agent still runs (written at most every :data:`HEARTBEAT_SECONDS`)."""
        with self._lock:
            now = self._boottime()
            if now - self._written_at >= HEARTBEAT_SECONDS:
                self._written_at = now
                self._save_later_ok(replace(self.ledger, last_seen=now), now)

    def accepted(self, endpoint: str) -> None:
        """Record that ``endpoint`` accepted the key (written once per endpoint; any thread)."""
        with self._lock:
            if self.ledger.accepted_by != endpoint:
                now = self._boottime()
                self._save_later_ok(replace(self.ledger, accepted_by=endpoint, last_seen=now), now)


class Closable(Requester, Protocol):
    """A requester the entry point closes at exit (:class:`agent.transport.Transport`)."""

    def close(self) -> None:
        """Close idle connections."""
        ...


class UntilDeadline:
    """A requester whose answers are never awaited past the key's deadline.

    The read timeout of each request is cut to the time left before ``deadline()`` (at least
    :data:`MIN_TIMEOUT_SECONDS`), so a keysvc or proxy that accepts the connection and then never
    answers cannot keep the agent alive beyond its key; connecting is bounded by the transport's
    own connect timeout (10 s), which ``expiry_margin_seconds`` (15 s) covers.
    """

    def __init__(
        self,
        inner: Closable,
        deadline: Callable[[], float],
        default_timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._default = default_timeout
        self._monotonic = monotonic

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send through the inner requester with the read timeout cut to the time left."""
        left = self._deadline() - self._monotonic()
        limit = min(self._default if timeout is None else timeout, max(MIN_TIMEOUT_SECONDS, left))
        return self._inner.request(method, url, headers=headers, body=body, timeout=limit)

    def close(self) -> None:
        """Close the inner requester."""
        self._inner.close()
