"""keysvc's last-line log redaction of keys and tokens."""

from __future__ import annotations

from keysvc import logging_setup
from keysvc.core import tokenformat
from keysvc.wire import keyformat

TOKEN = "nlt1_" + "a" * 16 + "_" + "b" * 32


def test_keys_and_tokens_are_redacted_anywhere_in_text() -> None:
    """A key and a token inside longer text are both replaced, and nothing else changes."""
    key = keyformat.mint().key
    text = f"Authorization: Bearer {key} then token={TOKEN}."
    assert logging_setup.redact(text) == "Authorization: Bearer [REDACTED] then token=[REDACTED]."
    assert tokenformat.TOKEN_PATTERN.fullmatch(TOKEN)


def test_log_events_are_redacted_in_every_string_field() -> None:
    """The structlog processor redacts every string value of an event and leaves other values alone."""
    key = keyformat.mint().key
    event = {"event": f"saw {key}", "detail": TOKEN, "count": 3}
    assert logging_setup.redact_keys(None, "info", event) == {
        "event": "saw [REDACTED]",
        "detail": "[REDACTED]",
        "count": 3,
    }


def test_lookalikes_that_are_not_tokens_stay() -> None:
    """Text with the prefix but not the shape of a token is not touched."""
    assert logging_setup.redact("nlt1_short and nlk1_short") == "nlt1_short and nlk1_short"
