"""The real ``keysvc keys`` and ``keysvc sweep`` commands on a temporary state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from keysvc.wire import keyformat
from tests.integration.cli_state import config_for, keysvc, open_state
from tests.servers import run_cli, wait_until

pytestmark = pytest.mark.integration

INSTANCE = "i-0123456789abcdef0"
SHORT_TTL = {**os.environ, "KEYSVC_KEY_TTL_SECONDS": "2"}
"""Keys issued with this environment live two seconds, so expiry tests need not wait an hour."""


def issue(
    state: Path, node: str = "node-1", *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Issue a key through the CLI and return its JSON answer."""
    result = keysvc(
        state,
        "keys",
        "issue",
        "--cluster",
        "prod",
        "--node",
        node,
        "--instance",
        INSTANCE,
        "--region",
        "eu",
        "--output",
        "json",
        *extra,
        env=env,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def wait_until_expired(state: Path, count: int) -> None:
    """Poll `keys list --state expired` until ``count`` keys are past their expiry."""
    wait_until(
        lambda: (
            len(json.loads(keysvc(state, "keys", "list", "--state", "expired", "-o", "json").stdout)) >= count
        ),
        timeout=30,
        what=f"{count} key(s) past expiry",
    )


def test_issue_prints_key_once_with_id_and_expiry(tmp_path: Path) -> None:
    """`keys issue` prints a valid key, its id and its expiry; the table form shows the same fields."""
    result = keysvc(
        tmp_path,
        "keys",
        "issue",
        "--cluster",
        "prod",
        "--node",
        "node-1",
        "--instance",
        INSTANCE,
        "--region",
        "eu",
        "--operation-id",
        "op-1",
        "--started-at",
        "2030-01-01T00:00:00Z",
        check=False,
    )
    assert result.returncode == 4, "an AddNode starting years ahead is refused"
    assert "future" in result.stderr
    now = int(time.time())
    result = keysvc(
        tmp_path,
        "keys",
        "issue",
        "--cluster",
        "prod",
        "--node",
        "node-1",
        "--instance",
        INSTANCE,
        "--region",
        "eu",
        "--operation-id",
        "op-1",
        "--started-at",
        str(now - 60),
    )
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    key = lines["key"].strip()
    assert keyformat.parse(key).__class__.__name__ == "Success"
    assert lines["key id"].strip() == key.split("_")[1]
    assert lines["expires"].strip() == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 + 3600))
    assert "shown once" in result.stderr


def test_list_show_and_states(tmp_path: Path) -> None:
    """`keys list` shows the issue's columns and filters; `keys show` prints the record without a secret."""
    first = issue(tmp_path, "node-1")
    second = issue(tmp_path, "node-1")
    other = issue(tmp_path, "node-2")
    assert second["superseded"] == [first["key_id"]]
    table = keysvc(tmp_path, "keys", "list").stdout.splitlines()
    assert table[0].split() == [
        "KEY",
        "ID",
        "CLUSTER",
        "NODE",
        "INSTANCE",
        "REGION",
        "STATE",
        "TTL",
        "LEFT",
        "EXPIRES",
        "USES",
        "LAST",
        "USED",
        "REPLAYS",
    ]
    assert len(table) == 4
    live = json.loads(keysvc(tmp_path, "keys", "list", "--state", "live", "-o", "json").stdout)
    assert {k["key_id"] for k in live} == {second["key_id"], other["key_id"]}
    node1 = json.loads(keysvc(tmp_path, "keys", "list", "--node", "node-1", "-o", "json").stdout)
    assert [k["state"] for k in node1] == ["revoked", "live"]
    shown = keysvc(tmp_path, "keys", "show", str(first["key_id"])).stdout
    assert "end_reason:       superseded" in shown
    assert str(first["key"]) not in shown
    missing = keysvc(tmp_path, "keys", "show", "aaaaaaaaaaaaaaaa", check=False)
    assert missing.returncode == 3


def test_revoke_selectors_and_idempotence(tmp_path: Path) -> None:
    """`keys revoke` takes one selector (cluster with node is one), revokes once, then reports nothing."""
    a = issue(tmp_path, "node-a")
    issue(tmp_path, "node-b")
    out = keysvc(tmp_path, "keys", "revoke", str(a["key_id"]), "--reason", "operator", "-o", "json").stdout
    assert json.loads(out) == {"revoked": [a["key_id"]]}
    again = keysvc(tmp_path, "keys", "revoke", str(a["key_id"]), "--reason", "operator").stdout
    assert "nothing to revoke" in again
    by_node = json.loads(
        keysvc(tmp_path, "keys", "revoke", "--node", "node-b", "--reason", "r", "-o", "json").stdout
    )
    assert len(by_node["revoked"]) == 1
    both = keysvc(
        tmp_path,
        "keys",
        "revoke",
        "--instance",
        "i-0123456789abcdef0",
        "--cluster",
        "prod",
        "--reason",
        "r",
        check=False,
    )
    assert both.returncode == 4
    none = keysvc(tmp_path, "keys", "revoke", "--reason", "r", check=False)
    assert none.returncode == 4
    assert keysvc(tmp_path, "keys", "list", "--state", "live", "-o", "json").stdout.strip() == "[]"


def test_invalid_ids_exit_4(tmp_path: Path) -> None:
    """A malformed id is refused with a message naming the field, and nothing is stored."""
    result = run_cli(
        [
            "keysvc",
            "--config",
            str(config_for(tmp_path)),
            "--state-dir",
            str(tmp_path),
            "keys",
            "issue",
            "--cluster",
            "Bad_Cluster",
            "--node",
            "n",
            "--instance",
            INSTANCE,
            "--region",
            "eu",
        ],
        check=False,
    )
    assert result.returncode == 4
    assert "invalid cluster" in result.stderr
    assert keysvc(tmp_path, "keys", "list", "-o", "json").stdout.strip() == "[]"


def test_sweep_expires_past_keys(tmp_path: Path) -> None:
    """`keysvc sweep` expires a key once its (shortened) lifetime is over, and only once."""
    issued = issue(tmp_path, "node-1", env=SHORT_TTL)
    assert issued["state"] == "live"
    wait_until_expired(tmp_path, 1)
    listed = json.loads(keysvc(tmp_path, "keys", "list", "--state", "expired", "-o", "json").stdout)
    assert [k["key_id"] for k in listed] == [issued["key_id"]], "reported expired before the sweep"
    assert json.loads(keysvc(tmp_path, "sweep", "-o", "json").stdout) == {"expired": [issued["key_id"]]}
    assert keysvc(tmp_path, "sweep").stdout.strip() == "nothing to expire"
    events = json.loads(keysvc(tmp_path, "audit", "list", "--event", "expired", "-o", "json").stdout)
    assert [e["key_id"] for e in events] == [issued["key_id"]]


def test_state_location_from_environment(tmp_path: Path) -> None:
    """KEYSVC_STATE_DIR and KEYSVC_DATABASE choose where the state lives; files are root-only."""
    env = {**os.environ, "KEYSVC_STATE_DIR": str(tmp_path / "envstate")}
    env.pop("KEYSVC_DATABASE", None)
    env["KEYSVC_CONFIG"] = str(config_for(tmp_path / "envstate"))  # regions only
    run_cli(
        [
            "keysvc",
            "keys",
            "issue",
            "--cluster",
            "c",
            "--node",
            "n",
            "--instance",
            INSTANCE,
            "--region",
            "eu",
        ],
        env=env,
    )
    state = tmp_path / "envstate"
    assert (state / "keysvc.db").stat().st_mode & 0o777 == 0o600
    assert (state / "audit-signing-key.pem").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    env["KEYSVC_DATABASE"] = f"sqlite:///{tmp_path}/other.db"
    listed = run_cli(["keysvc", "keys", "list", "-o", "json"], env=env, check=False)
    assert listed.returncode == 5, listed.stderr
    assert f"no keysvc database at {tmp_path}/other.db" in listed.stderr
    assert not (tmp_path / "other.db").exists()


def _spawn(state: Path, *argv: str) -> subprocess.Popen[str]:
    binary = Path(sys.executable).parent / "keysvc"
    return subprocess.Popen(
        [str(binary), "--config", str(config_for(state)), "--state-dir", str(state), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_processes_keep_one_live_key_and_one_chain(tmp_path: Path) -> None:
    """Six `keys issue` processes racing for one node leave one live key and an intact chain."""
    open_state(tmp_path).close()  # create the state once, so the racers share one signing key
    racers = [
        _spawn(
            tmp_path,
            "keys",
            "issue",
            "--cluster",
            "prod",
            "--node",
            "node-1",
            "--instance",
            INSTANCE,
            "--region",
            "eu",
            "--operation-id",
            f"op-{i}",
        )
        for i in range(6)
    ]
    assert [p.wait(timeout=60) for p in racers] == [0] * 6
    live = json.loads(keysvc(tmp_path, "keys", "list", "--state", "live", "-o", "json").stdout)
    assert len(live) == 1
    assert len(json.loads(keysvc(tmp_path, "keys", "list", "-o", "json").stdout)) == 6
    assert "11 records" in keysvc(tmp_path, "audit", "verify").stdout


def test_concurrent_sweeps_audit_each_key_once(tmp_path: Path) -> None:
    """Four `keysvc sweep` processes at once expire each key exactly once."""
    for i in range(3):
        issue(tmp_path, f"node-{i}", env=SHORT_TTL)
    wait_until_expired(tmp_path, 3)
    sweepers = [_spawn(tmp_path, "sweep", "-o", "json") for _ in range(4)]
    outputs = [p.communicate(timeout=60)[0] for p in sweepers]
    assert [p.returncode for p in sweepers] == [0] * 4
    expired = [key for out in outputs for key in json.loads(out)["expired"]]
    assert len(expired) == 3
    assert len(set(expired)) == 3
    events = json.loads(keysvc(tmp_path, "audit", "list", "--event", "expired", "-o", "json").stdout)
    assert sorted(e["key_id"] for e in events) == sorted(expired)
    keysvc(tmp_path, "audit", "verify")


def test_issue_without_instance_then_bind(tmp_path: Path) -> None:
    """`keys issue` without --instance leaves the key unbound ("-" / null); `keys bind` binds it once."""
    key_id = json.loads(
        keysvc(tmp_path, "keys", "issue", "--cluster", "prod", "--node", "node-1", "--region", "eu",
               "-o", "json").stdout
    )["key_id"]  # fmt: skip
    row = keysvc(tmp_path, "keys", "list").stdout.splitlines()[1].split()
    assert row[:5] == [key_id, "prod", "node-1", "-", "eu"]
    assert json.loads(keysvc(tmp_path, "keys", "show", key_id, "-o", "json").stdout)["instance"] is None
    assert [line.split() for line in keysvc(tmp_path, "keys", "show", key_id).stdout.splitlines()
            if line.startswith("instance:")] == [["instance:", "-"]]  # fmt: skip

    bind = ("keys", "bind", "--cluster", "prod", "--node", "node-1", "--instance", INSTANCE)
    assert keysvc(tmp_path, *bind).stdout.strip() == f"key {key_id} is bound to instance {INSTANCE}"
    assert json.loads(keysvc(tmp_path, *bind, "-o", "json").stdout) == {
        "key_id": key_id,
        "instance": INSTANCE,
    }
    assert keysvc(tmp_path, "keys", "list").stdout.splitlines()[1].split()[3] == INSTANCE

    other = keysvc(tmp_path, *bind[:-1], "i-0fedcba9876543210", check=False)
    assert other.returncode == 6
    assert other.stderr.startswith("keysvc: conflict: ")
    missing = keysvc(tmp_path, *bind[:5], "node-9", *bind[6:], check=False)
    assert missing.returncode == 3
    bound = json.loads(keysvc(tmp_path, "audit", "list", "--event", "bound", "-o", "json").stdout)
    assert [(r["event"], r["key_id"], r["instance"]) for r in bound] == [("bound", key_id, INSTANCE)]
    timeline = keysvc(tmp_path, "audit", "show", key_id).stdout
    assert f"instance {INSTANCE}" in timeline
    assert "bound" in timeline
    keysvc(tmp_path, "audit", "verify")


def test_issue_refuses_an_unconfigured_region(tmp_path: Path) -> None:
    """`keys issue --region mars` is refused as HTTP AddNode refuses it, and mints nothing."""
    result = keysvc(
        tmp_path, "keys", "issue", "--cluster", "prod", "--node", "n", "--region", "mars", check=False
    )
    assert result.returncode == 4
    assert "unknown region" in result.stderr
    assert keysvc(tmp_path, "keys", "list", "-o", "json").stdout.strip() == "[]"
