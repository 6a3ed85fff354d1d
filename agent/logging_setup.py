"""structlog configuration for the agent: JSON lines on stderr (journald under systemd), never the key.

Called once, by :mod:`agent.cli`. The first processor rate-limits repeated warnings
(:class:`agent.progress.WarningLimiter`). The last processor masks the agent's own key and anything shaped
like an ingest key in every string value, as a safety net: no log call passes the key on purpose.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from agent.progress import WarningLimiter
from keysvc.wire import KEY_PATTERN, SESSION_PATTERN

REDACTED = "[REDACTED]"


class KeyRedactor:
    """A structlog processor that removes the own key, any ``nlk1_`` key and ``nls1_`` session from logs."""

    def __init__(self) -> None:
        self.own_key: str | None = None

    def scrub(self, text: str) -> str:
        """Return ``text`` with the own key and any ``nlk1_`` key replaced."""
        if self.own_key and self.own_key in text:
            text = text.replace(self.own_key, REDACTED)
        if "nls1_" in text:  # a session credential (the exchanged form of the key)
            text = SESSION_PATTERN.sub(REDACTED, text)
        return KEY_PATTERN.sub(REDACTED, text) if "nlk1_" in text else text

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name, value in list(event_dict.items()):
            if isinstance(value, str):
                event_dict[name] = self.scrub(value)
        return event_dict


REDACTOR = KeyRedactor()


def processors() -> list[Any]:
    """The chain: warning rate limit, level, UTC timestamp, exception text, key redaction, JSON last."""
    return [
        WarningLimiter(),
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        REDACTOR,
        structlog.processors.JSONRenderer(sort_keys=True),
    ]


def configure(level: str = "info") -> None:
    """Send structured JSON logs to stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=processors(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: the agent logs a few lines a second at most, and an uncached module logger
        # always writes to the stream configured last (tests reconfigure it).
        cache_logger_on_first_use=False,
    )
