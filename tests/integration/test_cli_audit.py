"""The real ``keysvc audit`` commands: list, show, verify, export (and offline verify), public-key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keysvc.core import auditchain
from keysvc.core.clock import SystemClock
from keysvc.core.models import AddNode, Scope
from keysvc.files.audit_signing import AuditSigner
from keysvc.runtime import load_settings, open_ingest
from tests.integration.cli_state import config_for, keysvc, open_state

pytestmark = pytest.mark.integration

INSTANCE = "i-0123456789abcdef0"


def populate(state: Path) -> tuple[str, str]:
    """Issue, use (twice, two sources), refuse and revoke through the service; return two key ids."""
    service = open_state(state)
    ingest = open_ingest(load_settings(str(config_for(state)), str(state)), service)
    try:
        now = SystemClock().now()
        a = service.add_node(AddNode("prod", "node-a", INSTANCE, "eu", "op-a", now), actor="provisioner")
        b = service.add_node(AddNode("dev", "node-b", INSTANCE, "us", "op-b", now), actor="provisioner")
        ingest.authenticate(a.key, wanted=Scope("prod", "node-a", "eu"), source="10.0.0.1")
        ingest.authenticate(a.key, wanted=Scope("prod", "node-a", "eu"), source="10.0.0.2")
        with pytest.raises(Exception, match="refused"):
            ingest.authenticate(a.key, wanted=Scope("prod", "node-x", "eu"), source="10.0.0.3")
        service.revoke(key_id=a.record.key_id, reason="node terminated", actor="events")
        return a.record.key_id, b.record.key_id
    finally:
        service.close()


def test_list_filters_and_formats(tmp_path: Path) -> None:
    """`audit list` prints a table or JSON and filters by event, cluster, node and time."""
    a, b = populate(tmp_path)
    rows = keysvc(tmp_path, "audit", "list").stdout.strip().splitlines()
    assert rows[0].split() == [
        "SEQ",
        "TIME",
        "EVENT",
        "KEY",
        "ID",
        "CLUSTER",
        "NODE",
        "ACTOR",
        "SOURCE",
        "REASON",
    ]
    assert [r.split()[2] for r in rows[1:]] == ["issued", "issued", "used", "used", "refused", "revoked"]
    as_json = json.loads(keysvc(tmp_path, "audit", "list", "--event", "refused", "-o", "json").stdout)
    assert [(r["key_id"], r["reason"], r["source"]) for r in as_json] == [(a, "out_of_scope", "10.0.0.3")]
    dev = json.loads(keysvc(tmp_path, "audit", "list", "--cluster", "dev", "-o", "json").stdout)
    assert [r["key_id"] for r in dev] == [b]
    node = json.loads(keysvc(tmp_path, "audit", "list", "--node", "node-a", "-o", "json").stdout)
    assert len(node) == 5
    assert json.loads(keysvc(tmp_path, "audit", "list", "--since", "1h", "-o", "json").stdout)
    assert json.loads(keysvc(tmp_path, "audit", "list", "--until", "1h", "-o", "json").stdout) == []
    assert len(json.loads(keysvc(tmp_path, "audit", "list", "--limit", "2", "-o", "json").stdout)) == 2


def test_show_is_a_timeline(tmp_path: Path) -> None:
    """`audit show KEY_ID` prints the key and its whole life in order."""
    a, _ = populate(tmp_path)
    lines = keysvc(tmp_path, "audit", "show", a).stdout.strip().splitlines()
    assert lines[0].startswith(f"key {a}  cluster prod  node node-a")
    events = [line.split()[2] for line in lines[2:]]
    assert events == ["issued", "used", "used", "refused", "revoked"]
    assert "by events reason node terminated" in lines[-1]
    assert keysvc(tmp_path, "audit", "show", "aaaaaaaaaaaaaaaa", check=False).returncode == 3


def test_verify_export_and_offline_verify(tmp_path: Path) -> None:
    """`audit verify` exits 0; an export verifies offline with the pinned public key, and not with another."""
    populate(tmp_path / "state")
    state = tmp_path / "state"
    ok = keysvc(state, "audit", "verify")
    assert ok.stdout.startswith("audit chain OK: 6 records, signed head at record 6")
    pem = keysvc(state, "audit", "public-key").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "pub.pem").write_text(pem)
    keysvc(state, "audit", "export", "--format", "jsonl", "--out", str(tmp_path / "export.jsonl"))
    lines = (tmp_path / "export.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["records"] == 6
    assert header["head"]["seq"] == 6
    assert list(header["public_keys"].values()) == [pem]
    assert [json.loads(line)["seq"] for line in lines[1:]] == [1, 2, 3, 4, 5, 6]
    assert keysvc(state, "audit", "export").stdout.splitlines()[1:] == lines[1:]
    offline = keysvc(
        tmp_path / "elsewhere",
        "audit",
        "verify",
        "--file",
        str(tmp_path / "export.jsonl"),
        "--public-key",
        str(tmp_path / "pub.pem"),
        "-o",
        "json",
    )
    assert json.loads(offline.stdout)["ok"] is True
    other = tmp_path / "other.pem"
    other.write_text(AuditSigner.generate().public_key_pem())
    bad = keysvc(
        state,
        "audit",
        "verify",
        "--file",
        str(tmp_path / "export.jsonl"),
        "--public-key",
        str(other),
        check=False,
    )
    assert bad.returncode == 1
    assert "record 1: bad signature" in bad.stderr
    record = json.loads(lines[3])
    record["source"] = "6.6.6.6"
    lines[3] = json.dumps(record)
    (tmp_path / "edited.jsonl").write_text("\n".join(lines) + "\n")
    edited = keysvc(state, "audit", "verify", "--file", str(tmp_path / "edited.jsonl"), check=False)
    assert edited.returncode == 1
    assert "record 3: edited" in edited.stderr
    assert auditchain.Tamper.EDITED.value in edited.stderr
