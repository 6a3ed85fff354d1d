"""Configuration: defaults, TOML, KEYSVC_* overrides, and refusal of unknown or unsafe values."""

from __future__ import annotations

from pathlib import Path

import pytest

from keysvc.config import Settings
from keysvc.errors import ConfigError


def test_defaults_are_the_embedded_sqlite() -> None:
    """Without a file or environment, state lives in ./.state with a one-hour TTL."""
    settings = Settings.load(environ={})
    assert settings.state.database == "sqlite:///.state/keysvc.db"
    assert settings.state.audit_signing_key == Path(".state/audit-signing-key.pem")
    assert settings.state.key_ttl_seconds == 3600
    assert list(settings.regions) == ["local"]


def test_file_then_environment(tmp_path: Path) -> None:
    """Values come from the TOML file, and KEYSVC_* variables override them."""
    config = tmp_path / "keysvc.toml"
    config.write_text(
        '[state]\ndatabase = "sqlite:////srv/k.db"\nkey_ttl_seconds = 600\n'
        "[server]\nport = 9000\n"
        '[regions.eu]\nbucket = "logs-eu"\nendpoint = "https://eu.example.com"\n'
    )
    settings = Settings.load(environ={"KEYSVC_CONFIG": str(config), "KEYSVC_PORT": "9100"})
    assert settings.state.database == "sqlite:////srv/k.db"
    assert settings.state.key_ttl_seconds == 600
    assert settings.server.port == 9100
    assert settings.regions["eu"].bucket == "logs-eu"
    assert settings.regions["eu"].prefix == "nodelogs"


def test_state_dir_moves_every_state_file(tmp_path: Path) -> None:
    """KEYSVC_STATE_DIR moves every state file; KEYSVC_DATABASE still wins for the database."""
    settings = Settings.load(environ={"KEYSVC_STATE_DIR": str(tmp_path)})
    assert settings.state.database == f"sqlite:///{tmp_path}/keysvc.db"
    assert settings.state.audit_signing_key == tmp_path / "audit-signing-key.pem"
    assert settings.server.credentials_file == tmp_path / "credentials.toml"
    both = Settings.load(environ={"KEYSVC_STATE_DIR": str(tmp_path), "KEYSVC_DATABASE": "postgresql://db/k"})
    assert both.state.database == "postgresql://db/k"


@pytest.mark.parametrize(
    "text",
    [
        "[nope]\n",
        "[state]\nunknown = 1\n",
        "[state]\nkey_ttl_seconds = 7200\n",
        '[state]\nkey_ttl_seconds = "60"\n',
        '[state]\ndatabase = "mysql://x"\n',
        "[server]\nport = 0\n",
        "[server]\nurl_ttl_seconds = 901\n",
        "[server]\nport = true\n",
        "not toml [",
    ],
)
def test_bad_files_are_refused(tmp_path: Path, text: str) -> None:
    """Unknown sections and keys, wrong types and unsafe values are errors, not silent no-ops."""
    config = tmp_path / "keysvc.toml"
    config.write_text(text)
    with pytest.raises(ConfigError):
        Settings.from_file(config)


def test_bad_environment_is_refused() -> None:
    """A non-integer or too-long TTL from the environment is refused."""
    with pytest.raises(ConfigError):
        Settings.load(environ={"KEYSVC_KEY_TTL_SECONDS": "abc"})
    with pytest.raises(ConfigError):
        Settings.load(environ={"KEYSVC_KEY_TTL_SECONDS": "3601"})
    assert Settings.load(environ={"KEYSVC_KEY_TTL_SECONDS": "5"}).state.key_ttl_seconds == 5


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config file that cannot be read is named in the error."""
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_file(tmp_path / "absent.toml")


def test_rate_limit_and_shutdown_come_from_the_file() -> None:
    """The failed-login limiter and graceful shutdown are file settings, and a zero burst is refused."""
    settings = Settings.from_mapping(
        {"server": {"auth_burst": 50, "auth_refill_per_second": 2.5, "graceful_seconds": 3}}
    )
    assert (settings.server.auth_burst, settings.server.auth_refill_per_second) == (50, 2.5)
    assert settings.server.graceful_seconds == 3
    with pytest.raises(ConfigError, match="auth_burst"):
        Settings.from_mapping({"server": {"auth_burst": 0}})


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A config file holding bytes that are not UTF-8 is a ConfigError naming it, not a traceback."""
    config = tmp_path / "keysvc.toml"
    config.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        Settings.from_file(config)
