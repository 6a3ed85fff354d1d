"""The agent's logs: JSON lines, and never the key."""

from __future__ import annotations

import io
import json

import structlog

from agent import logging_setup
from keysvc.wire import keyformat


def test_own_key_and_any_key_are_removed_from_log_lines() -> None:
    """Even if a value carries the key by mistake, the rendered JSON line does not."""
    own, other = keyformat.mint().key, keyformat.mint().key
    out = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(out), processors=logging_setup.processors())
    logging_setup.REDACTOR.own_key = own
    try:
        logger.info("oops", detail=f"header was Bearer {own}", other=f"x{other}")
    finally:
        logging_setup.REDACTOR.own_key = None
    line = out.getvalue().strip()
    event = json.loads(line)
    assert own not in line
    assert other not in line
    assert event["event"] == "oops"
    assert event["level"] == "info"
    assert "[REDACTED]" in event["detail"]


def test_the_configured_chain_rate_limits_repeated_warnings() -> None:
    """Ten identical journalctl warnings in a row render as one JSON line: the limiter is in the chain."""
    out = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(out), processors=logging_setup.processors())
    for _ in range(10):
        logger.warning("journalctl_failed", unit="missing.service", code=1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["unit"] == "missing.service"
