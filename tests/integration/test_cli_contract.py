"""The CLI contract, as a real process: reads never create, one-line errors, exit codes, JSON errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keysvc.wire import keyformat

pytestmark = pytest.mark.integration

READS = [
    ["keys", "list"],
    ["keys", "show", "aaaaaaaaaaaaaaaa"],
    ["audit", "list"],
    ["audit", "show", "aaaaaaaaaaaaaaaa"],
    ["audit", "verify"],
    ["audit", "export", "--format", "jsonl", "--out", "audit.jsonl"],
    ["logs", "get", "--cluster", "c", "--node", "n"],
    ["keys", "revoke", "aaaaaaaaaaaaaaaa", "--reason", "x"],
    ["sweep"],
]


def in_dir(cwd: Path, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``keysvc ARGV`` in ``cwd`` with no KEYSVC_* variables but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYSVC_")}
    binary = Path(sys.executable).parent / "keysvc"
    return subprocess.run(
        [str(binary), *argv], cwd=cwd, env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("argv", READS, ids=lambda a: " ".join(a[:2]))
def test_reads_in_an_empty_directory_refuse_and_create_nothing(tmp_path: Path, argv: list[str]) -> None:
    """Each command that does not create state says which database is missing (exit 5) and writes no file."""
    result = in_dir(tmp_path, argv)
    assert result.returncode == 5, result.stderr
    assert result.stderr.splitlines() == [
        f"keysvc: no state: no keysvc database at {tmp_path}/.state/keysvc.db (nothing was created: only "
        "`keysvc serve`, `db migrate` and `keys issue` create state)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_missing_signing_key_is_refused_too(tmp_path: Path) -> None:
    """A database without its audit signing key is not silently given a new one by a read."""
    assert in_dir(tmp_path, ["db", "migrate"]).returncode == 0
    result = in_dir(tmp_path, ["audit", "verify"])
    assert result.returncode == 5
    assert f"no audit signing key at {tmp_path}/.state/audit-signing-key.pem" in result.stderr
    assert not (tmp_path / ".state" / "audit-signing-key.pem").exists()


def test_a_relative_sqlite_url_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    """README's old three-slash URL exits 78 with the four-slash form, and creates no ./var tree."""
    result = in_dir(tmp_path, ["keys", "list"], {"KEYSVC_DATABASE": "sqlite:///var/lib/keysvc/keysvc.db"})
    assert result.returncode == 78
    assert len(result.stderr.splitlines()) == 1
    assert "sqlite:////var/lib/keysvc/keysvc.db" in result.stderr
    assert not (tmp_path / "var").exists()


def test_json_errors_go_to_stdout_too(tmp_path: Path) -> None:
    """With -o json a failure is a JSON object on stdout as well as a line on stderr."""
    result = in_dir(tmp_path, ["keys", "list", "-o", "json"])
    assert result.returncode == 5
    error = json.loads(result.stdout)
    assert error["error"] == "StateMissing"
    assert error["exit_code"] == 5
    assert str(tmp_path) in error["message"]
    assert len(result.stderr.splitlines()) == 1


def test_usage_errors_are_64_in_one_line(tmp_path: Path) -> None:
    """A bad --log-level or an unknown command is one line and exit 64, not a traceback or exit 2."""
    for argv in (["--log-level", "verbose", "keys", "list"], ["frobnicate"]):
        result = in_dir(tmp_path, argv)
        assert result.returncode == 64, argv
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("keysvc: usage error: ")
    assert in_dir(tmp_path, ["--log-level", "INFO", "config", "show"]).returncode == 0


def test_version_completion_and_config_show(tmp_path: Path) -> None:
    """--version prints the package version; completion scripts parse; config show names each source."""
    assert in_dir(tmp_path, ["--version"]).stdout.strip() == "keysvc 0.1.0"
    script = in_dir(tmp_path, ["completion", "bash"]).stdout
    assert "complete -o default -F _keysvc keysvc" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert "bashcompinit" in in_dir(tmp_path, ["completion", "zsh"]).stdout
    shown = json.loads(
        in_dir(
            tmp_path, ["--state-dir", "/srv/k", "config", "show", "-o", "json"], {"KEYSVC_PORT": "9"}
        ).stdout
    )
    rows = {row["setting"]: row for row in shown["settings"]}
    assert rows["state.dir"]["source"] == "flag"
    assert rows["server.port"] == {
        "setting": "server.port",
        "variable": "KEYSVC_PORT",
        "value": 9,
        "source": "env KEYSVC_PORT",
    }
    assert rows["state.database"]["value"] == "sqlite:////srv/k/keysvc.db"
    assert rows["state.database"]["source"] == "state.dir"


def test_credentials_list_takes_dash_o_json(tmp_path: Path) -> None:
    """credentials list takes -o json like every listing, and --json still works."""
    state = tmp_path / "state"
    created = in_dir(
        tmp_path, ["--state-dir", str(state), "credentials", "create", "--name", "p", "--scope", "nodes:add"]
    )
    assert created.returncode == 0, created.stderr
    for flag in (["-o", "json"], ["--json"]):
        listed = in_dir(tmp_path, ["--state-dir", str(state), "credentials", "list", *flag])
        assert [c["name"] for c in json.loads(listed.stdout)] == ["p"]


def test_userdata_render_needs_no_state_and_creates_none(tmp_path: Path) -> None:
    """Rendering user data where no state exists works (no key can be another node's) and writes nothing."""
    key = keyformat.mint().key
    argv = ["userdata", "render", "--cluster", "c", "--node", "n", "--region"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYSVC_")}

    def render(region: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "keysvc"), *argv, region], cwd=tmp_path, env=clean,
            input=key + "\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    result = render("local")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#cloud-config")
    assert list(tmp_path.iterdir()) == []
    unknown = render("mars")
    assert unknown.returncode == 4
    assert unknown.stderr.strip() == "keysvc: unknown region"
