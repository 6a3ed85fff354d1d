"""Check results and reason values are stable."""

from __future__ import annotations

import dataclasses

import pytest

from keysvc.wire.results import Failure, Reason, Success


def test_reason_values_are_stable() -> None:
    """Audit records store these exact strings; changing one would break old records' meaning."""
    assert {r.value for r in Reason} == {
        "malformed",
        "bad_checksum",
        "unknown",
        "hash_mismatch",
        "expired",
        "revoked",
        "out_of_scope",
        "wrong_region",
        "wrong_action",
        "bad_object_name",
        "rate_limited",
        "missing_credential",
        "replayed",
        "bad_document",
        "bad_signature",
        "wrong_instance",
        "wrong_account",
        "stale_document",
        "missing_document",
    }


def test_results_are_frozen() -> None:
    """Success and Failure cannot be mutated after a check returns them."""
    failure = Failure(Reason.EXPIRED, "detail")
    with pytest.raises(dataclasses.FrozenInstanceError):
        failure.reason = Reason.UNKNOWN  # type: ignore[misc]
    assert Success(3).value == 3
    assert Failure(Reason.UNKNOWN).detail == ""
