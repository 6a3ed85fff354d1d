"""Times as every keysvc JSON answer writes them: RFC 3339, UTC, with ``Z``. Pure: no I/O.

A whole second prints without a fraction (``2026-11-28T08:00:00Z``); any other instant keeps
milliseconds (``2026-11-28T08:00:00.250Z``). Durations are integer seconds, rounded down, never
negative.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with ``Z``."""
    moment = datetime.fromtimestamp(ts, UTC)
    spec = "seconds" if float(ts).is_integer() else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def rfc3339_or_none(ts: float | None) -> str | None:
    """:func:`rfc3339`, passing None through."""
    return None if ts is None else rfc3339(ts)


def whole_seconds(seconds: float) -> int:
    """A duration as integer seconds, rounded down and never negative."""
    return max(0, math.floor(seconds))
