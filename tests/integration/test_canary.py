"""The canary: mint, use and revoke a key; its secret is then found nowhere on disk, in logs or in output."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from keysvc.wire import keyformat
from tests.integration.cli_state import config_for, keysvc

pytestmark = pytest.mark.integration

# Runs in its own process with keysvc's JSON logging at debug level. The key arrives on stdin, never in
# argv. Before closing the store it copies the database and its WAL, which hold the latest pages then.
USE_SCRIPT = """
import shutil, sys
from pathlib import Path
from keysvc import logging_setup
from keysvc.errors import Refused
from keysvc.core.models import Scope
from keysvc.runtime import load_settings, open_ingest, open_service

state, snapshot, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
key = sys.stdin.readline().strip()
key_id = key.split("_")[1]
logging_setup.configure("debug")
settings = load_settings(config, str(state))
service = open_service(settings)
ingest = open_ingest(settings, service)
wanted = Scope(cluster="prod", node="node-1", region="eu")
ingest.authenticate(key, wanted=wanted, source="10.0.0.1")
typo = key[:-1] + ("b" if key.endswith("a") else "a")  # always a different last character
bad = [(key, Scope("prod", "node-2", "eu")), (typo, wanted), (key, Scope("prod", "node-1", "us"))]
for presented, scope in bad:
    try:
        ingest.authenticate(presented, wanted=scope, source="10.0.0.2")
    except Refused:
        pass
    else:
        raise SystemExit("a bad request was accepted")
service.audit.record_refusal(reason="out_of_scope", source="10.0.0.4", key_id=key_id, detail={"body": key})
snapshot.mkdir()
for name in ("keysvc.db", "keysvc.db-wal", "keysvc.db-shm"):
    if (state / name).exists():
        shutil.copy(state / name, snapshot / name)
service.close()
"""


def forms(key: str) -> list[bytes]:
    """The plaintext key, its secret part alone, and their upper-case forms, as bytes."""
    secret = key.split("_", 2)[2]
    return [form.encode() for form in (key, secret, key.upper(), secret.upper())]


def test_secret_is_found_nowhere(tmp_path: Path) -> None:
    """After mint, use and revoke, no form of the key is in the DB (incl. WAL), logs or any CLI output."""
    state = tmp_path / "state"
    outputs: list[str] = []

    def run(*argv: str) -> str:
        result = keysvc(state, "--log-level", "debug", *argv)
        outputs.extend([result.stdout, result.stderr])
        return result.stdout

    issued_text = run(
        "keys",
        "issue",
        "--cluster",
        "prod",
        "--node",
        "node-1",
        "--instance",
        "i-0123456789abcdef0",
        "--region",
        "eu",
        "--operation-id",
        "op-canary",
        "-o",
        "json",
    )
    outputs.remove(issued_text)  # the one sanctioned appearance: `keys issue` prints the key once
    issued = json.loads(issued_text)
    key, key_id = issued["key"], issued["key_id"]

    used = subprocess.run(
        [sys.executable, "-c", USE_SCRIPT, str(state), str(tmp_path / "snapshot"), str(config_for(state))],
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert used.returncode == 0, used.stderr
    logs = used.stdout + used.stderr
    assert key_id in logs, "the service did log the activity"
    assert "key_refused" in logs
    assert (tmp_path / "snapshot" / "keysvc.db-wal").stat().st_size > 0

    run("keys", "revoke", key_id, "--reason", "canary")
    for argv in (
        ("keys", "list"),
        ("keys", "list", "-o", "json"),
        ("keys", "show", key_id),
        ("keys", "show", key_id, "-o", "json"),
        ("audit", "list"),
        ("audit", "list", "-o", "json"),
        ("audit", "show", key_id),
        ("audit", "show", key_id, "-o", "json"),
        ("audit", "verify"),
        ("audit", "export"),
        ("audit", "public-key"),
        ("sweep",),
        ("keys", "revoke", key_id, "--reason", "again"),
    ):
        run(*argv)

    files = [*state.iterdir(), *(tmp_path / "snapshot").iterdir()]
    disk = [path.read_bytes() for path in files if path.is_file()]
    conn = sqlite3.connect(state / "keysvc.db")
    try:
        dumped = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "op-canary" in dumped, "the dump does hold the key's record"
    haystacks = [*disk, dumped.encode(), logs.encode(), *(out.encode() for out in outputs)]
    for form in forms(key):
        for haystack in haystacks:
            assert form not in haystack
    assert not any(keyformat.looks_like_key(text) for text in [*outputs, logs, dumped])
