"""structlog configuration for keysvc: JSON lines on stderr, with a last-line redaction processor.

Called once, by the entry point. Modules just call ``structlog.get_logger()``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from keysvc.core.tokenformat import TOKEN_PATTERN
from keysvc.wire.keyformat import KEY_PATTERN

REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Replace anything shaped like an ingest key or a provisioner/admin token in ``text``."""
    if "nlk1_" in text:
        text = KEY_PATTERN.sub(REDACTED, text)
    if "nlt1_" in text:
        text = TOKEN_PATTERN.sub(REDACTED, text)
    return text


def redact_keys(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact keys and tokens in every string value of a log event; a safety net, not the policy."""
    for name, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[name] = redact(value)
    return event_dict


def configure(level: str = "info") -> None:
    """Send structured JSON logs to stderr: structlog's own events and stdlib loggers (uvicorn, boto)."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_keys,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_keys,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def access_logger() -> Any:
    """A logger for the access log alone: JSON lines on stderr whatever ``--log-level`` says.

    ``keysvc serve --access-log`` asks for every request; a global level of ``warning`` must not
    silently swallow what was asked for, so this logger has no level filter of its own.
    """
    return structlog.wrap_logger(
        structlog.PrintLogger(file=sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_keys,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
