"""The pure scope check returns the precise reason for a refusal."""

from __future__ import annotations

from keysvc.core.models import Scope
from keysvc.core.scope import check_scope
from keysvc.wire.results import Failure, Reason, Success

GRANTED = Scope(cluster="prod", node="node-1", region="eu")


def test_same_scope_passes() -> None:
    """A request for exactly the key's scope succeeds with the granted scope."""
    assert check_scope(GRANTED, Scope("prod", "node-1", "eu")) == Success(GRANTED)


def test_each_difference_has_its_reason() -> None:
    """Another action, region, cluster or node is refused with its own reason."""
    cases = {
        Scope("prod", "node-1", "eu", action="read"): Reason.WRONG_ACTION,
        Scope("prod", "node-1", "us"): Reason.WRONG_REGION,
        Scope("dev", "node-1", "eu"): Reason.OUT_OF_SCOPE,
        Scope("prod", "node-2", "eu"): Reason.OUT_OF_SCOPE,
    }
    for wanted, expected in cases.items():
        result = check_scope(GRANTED, wanted)
        assert isinstance(result, Failure)
        assert result.reason is expected


def test_action_is_checked_first() -> None:
    """A request that differs in everything is reported as the wrong action."""
    result = check_scope(GRANTED, Scope("dev", "x", "us", action="list"))
    assert isinstance(result, Failure)
    assert result.reason is Reason.WRONG_ACTION
