"""Configuration: defaults, TOML, KEYSVC_* overrides, and refusal of unknown or unsafe values."""

from __future__ import annotations

import re
import tomllib
import urllib.parse
from pathlib import Path

import pytest

from keysvc.config import ENV_VARS, Settings
from keysvc.errors import ConfigError
from keysvc.gcs.url_signing import GcsUrlSigner, new_service_account_file
from tests.signed_urls import public_key_of, verify_v4


def test_defaults_are_the_embedded_sqlite() -> None:
    """Without a file or environment, state lives in ./.state with a one-hour TTL."""
    settings = Settings.load(environ={})
    assert settings.state.database == f"sqlite:///{Path.cwd()}/.state/keysvc.db"
    assert settings.state.audit_signing_key == Path.cwd() / ".state/audit-signing-key.pem"
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
    """KEYSVC_STATE_DIR moves every state file that is not configured; KEYSVC_DATABASE still wins."""
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


def test_state_dir_never_replaces_a_database_from_the_file(tmp_path: Path) -> None:
    """The units' KEYSVC_STATE_DIR leaves a file's PostgreSQL URL alone and moves only unset files."""
    config = tmp_path / "keysvc.toml"
    config.write_text('[state]\ndatabase = "postgresql://keysvc@db.internal/keysvc"\n')
    env = {"KEYSVC_CONFIG": str(config), "KEYSVC_STATE_DIR": "/var/lib/keysvc"}
    settings = Settings.load(environ=env)
    assert settings.state.database == "postgresql://keysvc@db.internal/keysvc"
    assert settings.sources["state.database"] == f"file {config}"
    assert settings.state.audit_signing_key == Path("/var/lib/keysvc/audit-signing-key.pem")
    assert settings.sources["state.audit_signing_key"] == "state.dir"
    flagged = Settings.load(environ=env, flags={"state.dir": Path("/srv/k")})
    assert flagged.state.database == "postgresql://keysvc@db.internal/keysvc"
    assert flagged.server.credentials_file == Path("/srv/k/credentials.toml")


def test_precedence_is_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    """A flag beats its variable, the variable beats the file, and the file beats the default."""
    config = tmp_path / "keysvc.toml"
    config.write_text("[server]\nport = 9000\nauth_burst = 20\nurl_ttl_seconds = 60\n")
    env = {"KEYSVC_CONFIG": str(config), "KEYSVC_PORT": "9100", "KEYSVC_AUTH_BURST": "30"}
    settings = Settings.load(environ=env, flags={"server.port": 9200})
    assert settings.server.port == 9200
    assert settings.server.auth_burst == 30
    assert settings.server.url_ttl_seconds == 60
    assert settings.server.max_body_bytes == 65536
    assert [settings.sources[f"server.{k}"] for k in ("port", "auth_burst", "url_ttl_seconds")] == [
        "flag",
        "env KEYSVC_AUTH_BURST",
        f"file {config}",
    ]
    assert settings.sources["server.max_body_bytes"] == "default"


def test_every_setting_has_a_variable_of_its_type() -> None:
    """Lists, booleans and optional paths come from the environment too, parsed as their type."""
    settings = Settings.load(
        environ={
            "KEYSVC_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
            "KEYSVC_EVENTS_IN_SERVE": "true",
            "KEYSVC_TLS_CERT_FILE": "/etc/keysvc/tls.crt",
            "KEYSVC_TLS_KEY_FILE": "/etc/keysvc/tls.key",
        }
    )
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "192.0.2.7")
    assert settings.events.in_serve is True
    assert settings.server.tls_cert_file == Path("/etc/keysvc/tls.crt")
    with pytest.raises(ConfigError, match="KEYSVC_EVENTS_IN_SERVE"):
        Settings.load(environ={"KEYSVC_EVENTS_IN_SERVE": "maybe"})
    with pytest.raises(ConfigError, match="set together"):
        Settings.load(environ={"KEYSVC_TLS_CERT_FILE": "/etc/keysvc/tls.crt"})


@pytest.mark.parametrize(
    ("layer", "value"),
    [("file", "sqlite:///var/lib/keysvc/keysvc.db"), ("env", "sqlite:///var/lib/keysvc/keysvc.db")],
)
def test_a_relative_sqlite_url_is_refused_with_the_four_slash_form(
    tmp_path: Path, layer: str, value: str
) -> None:
    """README's old three-slash URL is relative to the working directory: refused, showing the fix."""
    config = tmp_path / "keysvc.toml"
    config.write_text(f'[state]\ndatabase = "{value}"\n' if layer == "file" else "")
    env = {"KEYSVC_CONFIG": str(config)} | ({"KEYSVC_DATABASE": value} if layer == "env" else {})
    with pytest.raises(ConfigError, match=re.escape("sqlite:////var/lib/keysvc/keysvc.db")) as caught:
        Settings.load(environ=env)
    assert "relative" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert Settings.load(environ={"KEYSVC_DATABASE": "sqlite:////var/lib/keysvc/keysvc.db"})


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('prefix = "./../x"', "regions.eu.prefix"),
        ('prefix = ".."', "regions.eu.prefix"),
        ('prefix = ""', "regions.eu.prefix"),
        ('prefix = "logs/\\u0007x"', "regions.eu.prefix"),
        ('prefix = "/logs"', "regions.eu.prefix"),
        ('bucket = "nodelogs eu"', "regions.eu.bucket"),
        ('bucket = "nodelogs/eu"', "regions.eu.bucket"),
        ('bucket = "NodeLogs"', "regions.eu.bucket"),
        ('bucket = "my-google-logs"', "regions.eu.bucket"),
    ],
)
def test_region_names_are_checked_against_gcs_rules(table: str, named: str) -> None:
    """Escaping prefixes and bucket names GCS refuses are one-line errors that name the setting."""
    base = "" if table.startswith("bucket") else 'bucket = "nodelogs-eu"\n'
    text = f"[regions.eu]\n{base}{table}\n"
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as caught:
        Settings.from_mapping(tomllib.loads(text))
    assert "\n" not in str(caught.value)


def test_a_default_port_in_the_gcs_endpoint_is_dropped() -> None:
    """An explicit :443 is normalised away, since clients never send it in the signed Host header."""
    settings = Settings.load(environ={"KEYSVC_GCS_ENDPOINT": "https://storage.googleapis.com:443"})
    assert settings.gcs.endpoint == "https://storage.googleapis.com"
    assert Settings.load(environ={"KEYSVC_GCS_ENDPOINT": "http://127.0.0.1:4443"}).gcs.endpoint == (
        "http://127.0.0.1:4443"
    )
    for bad in ("storage.googleapis.com", "https://storage.googleapis.com/b", "https://u:p@h"):
        with pytest.raises(ConfigError, match=r"gcs\.endpoint"):
            Settings.load(environ={"KEYSVC_GCS_ENDPOINT": bad})


def test_urls_for_the_normalised_endpoint_are_signed_for_the_host_clients_send(tmp_path: Path) -> None:
    """With :443 dropped, the signed Host is the one HTTP clients send; with it kept, it would not be."""
    account = tmp_path / "sa.json"
    new_service_account_file(account, email="k@p.iam.gserviceaccount.com")
    headers = {"content-type": "application/gzip"}

    def url_for(endpoint: str) -> str:
        return GcsUrlSigner(account, endpoint).sign_put(
            bucket="nodelogs-eu",
            object_name="a/b.gz",
            headers=headers,
            signed_at=1_800_000_000,
            expires_in=60,
        )

    raw = "https://storage.googleapis.com:443"
    assert urllib.parse.urlsplit(url_for(raw)).netloc == "storage.googleapis.com:443"  # the trap
    settings = Settings.load(environ={"KEYSVC_GCS_ENDPOINT": raw})
    signed = verify_v4(url_for(settings.gcs.endpoint), "PUT", headers, public_key_of(account))
    assert signed.host == "storage.googleapis.com"


def test_readme_names_every_setting_and_its_variable() -> None:
    """README's settings table lists every setting of keysvc.config with its environment variable."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:configuration -->", 1)[1].split("<!-- /section:configuration -->")[0]
    missing = [
        f"{section_name}.{key} / {var}"
        for (section_name, key), var in ENV_VARS.items()
        if f"`{var}`" not in section or f"{section_name}.{key}" not in section
    ]
    assert missing == []
