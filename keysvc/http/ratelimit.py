"""A token bucket per source address for failed authentications. Pure: every call takes ``now``.

Each source starts with ``burst`` tokens and regains ``per_second`` tokens a second, up to
``burst``. Every failed authentication spends one token. While a source has less than one token,
its requests are answered 429 before any credential is looked at, so a brute-force loop costs
the service next to nothing and other sources are unaffected. Successful requests spend nothing.

Memory is bounded: at most ``max_sources`` buckets are kept, least recently failed first out. A
bucket that has refilled completely is indistinguishable from a new one and is dropped.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    announced: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a source may try to authenticate now.

    ``retry_after`` is 0 when it may, else the whole seconds until it may try once more.
    ``first_refusal`` is True on the first refusal since the source ran dry, so the caller
    audits one record per lockout rather than one per request.
    """

    retry_after: int
    first_refusal: bool = False

    @property
    def allowed(self) -> bool:
        """True when the source may try now."""
        return self.retry_after == 0


class FailureLimiter:
    """Token buckets of failed authentications, keyed by source address. Thread-safe."""

    def __init__(self, *, burst: int = 10, per_second: float = 0.5, max_sources: int = 65536) -> None:
        if burst < 1 or per_second <= 0 or max_sources < 1:
            raise ValueError("burst, per_second and max_sources must be positive")
        self._burst = float(burst)
        self._rate = per_second
        self._max = max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _refilled(self, source: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(source)
        if bucket is None:
            return None
        bucket.tokens = min(self._burst, bucket.tokens + max(0.0, now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= self._burst:
            del self._buckets[source]
            return None
        return bucket

    def check(self, source: str, now: float) -> Verdict:
        """Say whether ``source`` may attempt an authentication at ``now``."""
        with self._lock:
            bucket = self._refilled(source, now)
            if bucket is None:
                return Verdict(0)
            if bucket.tokens >= 1.0:
                bucket.announced = False
                return Verdict(0)
            first = not bucket.announced
            bucket.announced = True
            return Verdict(max(1, math.ceil((1.0 - bucket.tokens) / self._rate)), first_refusal=first)

    def failed(self, source: str, now: float) -> None:
        """Spend one token of ``source`` for a failed authentication at ``now``."""
        with self._lock:
            bucket = self._refilled(source, now)
            if bucket is None:
                bucket = _Bucket(tokens=self._burst, updated=now)
                self._buckets[source] = bucket
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            if bucket.tokens >= 1.0:
                bucket.announced = False
            self._buckets.move_to_end(source)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)

    def tracked(self) -> int:
        """Return how many sources currently have a partly spent bucket."""
        with self._lock:
            return len(self._buckets)
