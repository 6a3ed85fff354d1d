"""What the agent tells its journal: a progress line per source, a summary at exit, calm warnings.

Someone debugging a node from ``journalctl -u nodelogs-agent`` wants to know, without reading the
bucket, whether each source is keeping up. So:

- every :data:`PROGRESS_SECONDS` (and once the first time a source is seen) one ``source_progress``
  line per source: bytes shipped (acknowledged by the bucket) in this run, the offset staged in the
  current generation, the lag behind the file's end, and the generation;
- at exit one ``agent_summary`` line: per source the same figures, plus chunks delivered and run time;
- warnings about the same thing (an event for one source, unit, path or error kind) at most once per
  :data:`WARN_SECONDS`: the first passes, later ones are dropped and counted, and the next one that
  passes carries ``suppressed=N``. A ``journalctl`` that fails every second, or a probe failing
  through a long outage, then costs a line a minute, not sixty.

:class:`Progress` takes the clock as an argument (pure arithmetic, testable to the second);
:class:`WarningLimiter` is a structlog processor that :mod:`agent.logging_setup` installs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

PROGRESS_SECONDS = 30.0
WARN_SECONDS = 60.0
#: Fields that name what a warning is about; the first present one is part of the rate-limit key.
_SUBJECTS = ("source", "unit", "path", "error")

log = structlog.get_logger()


class _Generation(Protocol):
    @property
    def generation(self) -> int: ...


class Tail(Protocol):
    """What progress reads from a :class:`agent.sources.FileTail`."""

    @property
    def source_id(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def current(self) -> _Generation | None: ...
    def available(self) -> int:
        """Bytes of the current generation that exist."""
        ...


class Delivered(Protocol):
    """What progress reads from :class:`agent.delivery.Delivery`."""

    @property
    def bytes_delivered(self) -> Mapping[str, int]: ...
    @property
    def chunks_delivered(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SourceProgress:
    """One source's figures at one moment."""

    source: str
    path: str
    generation: int | None
    shipped_bytes: int
    offset: int
    lag_bytes: int


def snapshot(tails: Iterable[Tail], shipped: Mapping[str, int]) -> list[SourceProgress]:
    """Read each tail's figures; a source whose file does not exist yet has no generation."""
    out = []
    for tail in tails:
        current = tail.current
        end = tail.available() if current is not None else 0
        out.append(
            SourceProgress(
                source=tail.source_id,
                path=tail.path,
                generation=current.generation if current is not None else None,
                shipped_bytes=shipped.get(tail.source_id, 0),
                offset=tail.offset if current is not None else 0,
                lag_bytes=max(0, end - tail.offset) if current is not None else 0,
            )
        )
    return out


def _fields(item: SourceProgress) -> dict[str, Any]:
    return {
        "source": item.source,
        "path": item.path,
        "generation": item.generation,
        "shipped_bytes": item.shipped_bytes,
        "offset": item.offset,
        "lag_bytes": item.lag_bytes,
        "waiting_for_file": item.generation is None,
    }


class Progress:
    """Emits ``source_progress`` lines at an interval and the ``agent_summary`` line at exit."""

    def __init__(self, interval: float = PROGRESS_SECONDS) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}

    def due(self, source: str, now: float) -> bool:
        """Whether ``source`` gets a line at ``now`` (its first sighting always does)."""
        if now < self._next.get(source, float("-inf")):
            return False
        self._next[source] = now + self.interval
        return True

    def tick(self, now: float, tails: Iterable[Tail], delivered: Delivered) -> None:
        """Log one line for each source that is due."""
        tails = [tail for tail in tails if self.due(tail.source_id, now)]
        for item in snapshot(tails, delivered.bytes_delivered):
            log.info("source_progress", **_fields(item))

    def summary(self, tails: Iterable[Tail], delivered: Delivered, seconds: float) -> None:
        """Log the exit summary."""
        items = snapshot(tails, delivered.bytes_delivered)
        log.info(
            "agent_summary",
            seconds=round(seconds, 1),
            chunks_delivered=delivered.chunks_delivered,
            shipped_bytes=sum(item.shipped_bytes for item in items),
            lag_bytes=sum(item.lag_bytes for item in items),
            sources=[_fields(item) for item in items],
        )


class WarningLimiter:
    """A structlog processor: repeated warnings about one subject pass at most once per interval."""

    def __init__(self, interval: float = WARN_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._state: dict[tuple[str, str], tuple[float, int]] = {}

    def __call__(
        self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if method not in ("warning", "warn"):
            return event_dict
        subject = next((str(event_dict[name]) for name in _SUBJECTS if name in event_dict), "")
        key = (str(event_dict.get("event", "")), subject)
        now = self._clock()
        passed_at, dropped = self._state.get(key, (float("-inf"), 0))
        if now - passed_at < self.interval:
            self._state[key] = (passed_at, dropped + 1)
            raise structlog.DropEvent
        self._state[key] = (now, 0)
        if dropped:
            event_dict["suppressed"] = dropped
        return event_dict
