"""Tampering with the SQLite file directly: `keysvc audit verify` exits 1 naming the record and the kind."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from keysvc.core.clock import SystemClock
from keysvc.core.models import AddNode
from keysvc.files.audit_signing import AuditSigner
from keysvc.files.private_files import write_private
from tests.integration.cli_state import keysvc, open_state

pytestmark = pytest.mark.integration

RECORDS = 6


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with a six-record chain: five issued (one superseding) and one revoked."""
    state = tmp_path_factory.mktemp("pristine")
    service = open_state(state)
    now = SystemClock().now()
    try:
        for i in range(4):
            service.add_node(
                AddNode("prod", f"node-{i}", "i-0123456789abcdef0", "eu", f"op-{i}", now), actor="p"
            )
        service.add_node(AddNode("prod", "node-0", "i-0123456789abcdef0", "eu", "op-0", now), actor="p")
    finally:
        service.close()
    return state


@pytest.fixture
def state(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine state, free to tamper with."""
    copy = tmp_path / "state"
    shutil.copytree(pristine, copy)
    return copy


def tamper(state: Path, *statements: str) -> None:
    """Run SQL directly against the database file, as an intruder with file access would."""
    conn = sqlite3.connect(state / "keysvc.db")
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def broken(state: Path, *extra: str) -> str:
    """Run `audit verify`, require exit 1, and return what it said."""
    result = keysvc(state, "audit", "verify", *extra, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    return result.stderr


def test_pristine_chain_verifies(state: Path) -> None:
    """The untouched copy verifies: exit 0, with the number of records."""
    result = keysvc(state, "audit", "verify")
    assert f"{RECORDS} records" in result.stdout


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (["UPDATE audit_records SET actor = 'nobody' WHERE seq = 3"], "record 3: edited"),
        (["UPDATE audit_records SET at = at - 86400 WHERE seq = 1"], "record 1: edited"),
        (
            ['UPDATE audit_records SET detail = \'{"operation_id": "forged"}\' WHERE seq = 4'],
            "record 4: edited",
        ),
        (["UPDATE audit_records SET detail = '{' WHERE seq = 2"], "record 2: edited"),
        (["UPDATE audit_records SET event = 'bogus' WHERE seq = 5"], "record 5: edited"),
        (["DELETE FROM audit_records WHERE seq = 2"], "record 2: missing"),
        (["DELETE FROM audit_records WHERE seq = 1"], "record 1: missing"),
        (
            [
                "UPDATE audit_records SET seq = -1 WHERE seq = 2",
                "UPDATE audit_records SET seq = 2 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = -1",
            ],
            "record 2: reordered",
        ),
        (["DELETE FROM audit_records WHERE seq >= 5"], f"record {RECORDS - 1}: truncated tail"),
        (["DELETE FROM audit_records WHERE seq = 6"], f"record {RECORDS}: truncated tail"),
        (
            [
                "DELETE FROM audit_records WHERE seq = 6",
                "UPDATE audit_head SET seq = 5, "
                "record_hash = (SELECT record_hash FROM audit_records WHERE seq = 5)",
            ],
            f"record {RECORDS - 1}: bad signature",
        ),
        (
            [
                "UPDATE audit_records SET signature = "
                "(SELECT signature FROM audit_records WHERE seq = 1) WHERE seq = 2"
            ],
            "record 2: bad signature",
        ),
        (["DELETE FROM audit_head"], "record 1: records beyond the signed head"),
    ],
    ids=[
        "edit-actor",
        "edit-time",
        "edit-detail",
        "corrupt-detail",
        "edit-event",
        "delete-middle",
        "delete-first",
        "reorder",
        "truncate-two",
        "truncate-one",
        "truncate-and-rewind-head",
        "swap-signature",
        "drop-head",
    ],
)
def test_tampering_is_named(state: Path, statements: list[str], expected: str) -> None:
    """Each kind of direct edit of the SQLite file is caught and named by record and kind."""
    tamper(state, *statements)
    assert expected in broken(state)


def test_swapped_signing_key(state: Path) -> None:
    """Replacing the signing key file makes every old record a bad signature, from record 1."""
    key_file = state / "audit-signing-key.pem"
    key_file.unlink()
    write_private(key_file, AuditSigner.generate().private_pem(), replace=False)
    assert "record 1: bad signature" in broken(state)


def test_records_signed_after_a_key_swap_fail_against_the_pinned_key(state: Path, tmp_path: Path) -> None:
    """With the original public key pinned, the first record signed by a swapped-in key is named."""
    pinned = tmp_path / "pinned.pem"
    pinned.write_text(keysvc(state, "audit", "public-key").stdout)
    key_file = state / "audit-signing-key.pem"
    key_file.unlink()
    write_private(key_file, AuditSigner.generate().private_pem(), replace=False)
    keysvc(
        state,
        "keys",
        "issue",
        "--cluster",
        "prod",
        "--node",
        "late",
        "--instance",
        "i-0123456789abcdef0",
        "--region",
        "eu",
    )
    message = broken(state, "--public-key", str(pinned))
    assert f"record {RECORDS + 1}: bad signature" in message
    assert "untrusted" in message
