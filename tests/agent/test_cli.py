"""``nodelogs-agent`` exit codes for the cases decided before any network use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent import cli, keyfile
from agent.errors import (
    AgentError,
    ConfigError,
    ConnectError,
    KeyExpired,
    KeyFileInsecure,
    KeyRefused,
    KeyUnavailable,
    StateCorrupt,
)
from keysvc.wire import keyformat


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """cli.main configures structlog for the process; put the defaults back after each test."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def node_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """agent.env variables pointing at tmp_path (keysvc itself is never reached in these tests)."""
    for name, value in {
        "NODELOGS_ENDPOINT": "http://127.0.0.1:9",
        "NODELOGS_CLUSTER": "c1",
        "NODELOGS_NODE": "n1",
        "NODELOGS_REGION": "eu",
        "NODELOGS_KEY_FILE": str(tmp_path / "key"),
        "NODELOGS_STATE_DIR": str(tmp_path / "state"),
        "NODELOGS_CONFIG": str(tmp_path / "agent.toml"),
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "agent.toml").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), 2),
        (KeyFileInsecure("x"), 2),
        (StateCorrupt("x"), 2),
        (KeyUnavailable("x"), 12),
        (KeyExpired("x"), 10),
        (KeyRefused("x"), 11),
        (ConnectError("x"), 1),
        (AgentError("x"), 1),
    ],
)
def test_errors_map_to_the_documented_exit_codes(error: AgentError, code: int) -> None:
    """Each error class ends the process with the code the systemd unit expects."""
    assert cli.exit_code_for(error) == code


def test_missing_settings_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without NODELOGS_ENDPOINT and friends the agent exits 2 and says what is missing."""
    for name in (
        "NODELOGS_ENDPOINT",
        "NODELOGS_CLUSTER",
        "NODELOGS_NODE",
        "NODELOGS_REGION",
        "NODELOGS_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NODELOGS_CONFIG", "/nonexistent-dir/agent.toml")
    assert cli.main(["run"]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_absent_key_exits_12(node_env: Path) -> None:
    """No key file: exit 12 at once."""
    assert cli.main(["run"]) == 12


def test_finished_key_exits_12_and_its_file_is_removed(node_env: Path) -> None:
    """A key marked finished earlier is not used again; a lingering key file is deleted."""
    minted = keyformat.mint()
    key_file = node_env / "key"
    key_file.write_text(minted.key)
    key_file.chmod(0o600)
    (node_env / "state").mkdir()
    keyfile.mark_finished(node_env / "state", minted.key_id, "refused", 0.0)
    assert cli.main(["run"]) == 12
    assert not key_file.exists()


def test_world_readable_key_exits_2(node_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 0644 key file is refused with exit 2, and the key is not printed."""
    minted = keyformat.mint()
    (node_env / "key").write_text(minted.key)
    (node_env / "key").chmod(0o644)
    assert cli.main(["run"]) == 2
    captured = capsys.readouterr()
    assert "chmod 600" in captured.err
    assert minted.key not in captured.err + captured.out


def test_key_is_never_a_flag() -> None:
    """The parser has no option that takes the key."""
    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--key", "nlk1_x"])


@pytest.mark.parametrize("state_dir", ["/proc/x", "/proc/self/status/x", "FILE"])
def test_an_unusable_state_dir_exits_2_with_one_line(
    node_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], state_dir: str
) -> None:
    """A state dir that cannot be created or written is exit 2, one line naming the setting, no traceback."""
    if state_dir == "FILE":
        state_dir = str(node_env / "a-file")
        Path(state_dir).write_text("")
    minted = keyformat.mint()
    (node_env / "key").write_text(minted.key)
    (node_env / "key").chmod(0o600)
    monkeypatch.setenv("NODELOGS_STATE_DIR", state_dir)
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"nodelogs-agent: configuration error: state_dir {state_dir} cannot be used")
    assert "NODELOGS_STATE_DIR" in err
    assert "Traceback" not in err
    assert (node_env / "key").exists()


def test_a_key_pasted_into_a_setting_never_reaches_the_message(
    node_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """NODELOGS_KEY_FILE holding the key itself (not a path) is refused without echoing the key."""
    minted = keyformat.mint()
    monkeypatch.setenv("NODELOGS_KEY_FILE", minted.key)
    monkeypatch.setenv("NODELOGS_CHUNK_BYTES", minted.key)
    assert cli.main(["run"]) == 2
    captured = capsys.readouterr()
    assert minted.key not in captured.err + captured.out
    assert "[REDACTED]" in captured.err
