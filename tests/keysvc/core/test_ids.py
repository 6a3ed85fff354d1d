"""Strict id validation: charset and length, with errors that name the field."""

from __future__ import annotations

import pytest

from keysvc.core import ids, tokenformat
from keysvc.errors import InvalidInput
from keysvc.wire import keyformat


@pytest.mark.parametrize(
    ("check", "good"),
    [
        (ids.cluster_id, ["a", "prod", "prod-eu-1", "a" * 63]),
        (ids.node_id, ["n", "ip-10-0-0-12.ec2.internal", ".".join(["a" * 63] * 3) + "." + "a" * 61]),
        (ids.instance_id, ["i-01234567", "i-0123456789abcdef0"]),
        (ids.region, ["eu", "us-east-1", "a" * 32]),
        (ids.operation_id, ["op-1", "A.b_c:d-e", "x" * 128]),
    ],
)
def test_valid_ids_pass_through(check: object, good: list[str]) -> None:
    """Valid ids are returned unchanged."""
    assert callable(check)
    for value in good:
        assert check(value) == value


@pytest.mark.parametrize(
    ("check", "field", "bad"),
    [
        (ids.cluster_id, "cluster", ["", "Prod", "-a", "a-", "a_b", "a" * 64, "a.b", "a b"]),
        (ids.node_id, "node", ["", "Node", "a..b", ".a", "a.", "a_b", "a" * 64, "x" * 254]),
        (
            ids.instance_id,
            "instance",
            ["", "i-123", "i-0123456789ABCDEF0", "fedcba9876543210f", "i-fedcba987654321"],
        ),
        (ids.region, "region", ["", "EU", "1eu", "eu-", "a" * 33]),
        (ids.operation_id, "operation_id", ["", "-op", "op 1", "op/1", "x" * 129, "op\n"]),
    ],
)
def test_invalid_ids_are_refused_naming_the_field(check: object, field: str, bad: list[str]) -> None:
    """Each invalid id raises InvalidInput whose message names the field and does not echo the value."""
    assert callable(check)
    for value in bad:
        with pytest.raises(InvalidInput, match=f"invalid {field}") as caught:
            check(value)
        if len(value) > 3:
            assert value not in str(caught.value)


def test_non_strings_are_refused() -> None:
    """None, numbers and bytes are not ids."""
    for value in (None, 1, b"prod", ["prod"]):
        with pytest.raises(InvalidInput):
            ids.cluster_id(value)


def test_operation_id_shaped_like_a_secret_is_refused() -> None:
    """An operation id carrying an ingest key or a provisioner token is refused, so no secret is stored."""
    key = keyformat.mint().key
    _, token = tokenformat.mint_token()
    for value in (key, f"op-{key}", token, f"retry:{token}"):
        with pytest.raises(InvalidInput, match="invalid operation_id") as caught:
            ids.operation_id(value)
        assert key not in str(caught.value)
        assert token not in str(caught.value)
