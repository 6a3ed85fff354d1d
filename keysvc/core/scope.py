"""The scope check: may this key do this thing? Pure; returns a reason on refusal."""

from __future__ import annotations

from keysvc.core.models import Scope
from keysvc.wire.results import Failure, Reason, Success


def check_scope(granted: Scope, wanted: Scope) -> Success[Scope] | Failure:
    """Compare what a key was minted for with what a request wants to do."""
    if wanted.action != granted.action:
        return Failure(Reason.WRONG_ACTION, f"action {wanted.action!r} is not {granted.action!r}")
    if wanted.region != granted.region:
        return Failure(Reason.WRONG_REGION, f"region {wanted.region!r} is not {granted.region!r}")
    if (wanted.cluster, wanted.node) != (granted.cluster, granted.node):
        return Failure(Reason.OUT_OF_SCOPE, "cluster or node differs from the key's scope")
    return Success(granted)
