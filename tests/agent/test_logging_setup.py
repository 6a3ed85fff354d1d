"""The agent's logs: JSON on stderr, and never the key."""

from __future__ import annotations

import json

import pytest
import structlog

from agent import logging_setup
from keysvc import keyformat


def test_own_key_and_any_key_are_removed_from_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Even if a value carries the key by mistake, the rendered JSON line does not."""
    own, other = keyformat.mint().key, keyformat.mint().key
    logging_setup.REDACTOR.own_key = own
    try:
        logging_setup.configure("info")
        structlog.get_logger().info("oops", detail=f"header was Bearer {own}", other=f"x{other}")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging_setup.REDACTOR.own_key = None
        structlog.reset_defaults()
    event = json.loads(line)
    assert own not in line
    assert other not in line
    assert event["event"] == "oops"
    assert "[REDACTED]" in event["detail"]
