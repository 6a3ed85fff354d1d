"""Configuration: defaults, TOML < environment < flags, validation with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import DEFAULT_SOURCES, load
from agent.errors import ConfigError

BASE = {
    "NODELOGS_ENDPOINT": "https://keysvc.example.com",
    "NODELOGS_CLUSTER": "c1",
    "NODELOGS_NODE": "n1",
    "NODELOGS_REGION": "eu",
}


def env(_tmp_path: Path, **extra: str) -> dict[str, str]:
    """The agent.env variables plus extras (no NODELOGS_CONFIG: the optional default file is absent here)."""
    return {**BASE, **extra}


def test_defaults_are_documented_values(tmp_path: Path) -> None:
    """Without a file or flags: the two cloud-init logs, 1 MiB / 2 s chunks, standard paths."""
    config = load(env(tmp_path))
    assert config.sources == DEFAULT_SOURCES
    assert (config.chunk_bytes, config.chunk_seconds) == (1024 * 1024, 2.0)
    assert (config.key_file, config.state_dir) == ("/etc/nodelogs/key", "/var/lib/nodelogs-agent")


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the TOML file."""
    toml = tmp_path / "agent.toml"
    toml.write_text('chunk_bytes = 8192\nchunk_seconds = 5\nsources = ["/a.log", "journal:kubelet"]\n')
    config = load(
        env(tmp_path, NODELOGS_CONFIG=str(toml), NODELOGS_CHUNK_SECONDS="3"), {"chunk_bytes": 16384}
    )
    assert config.sources == ("/a.log", "journal:kubelet")
    assert (config.chunk_bytes, config.chunk_seconds) == (16384, 3.0)


def test_sources_from_environment_are_comma_separated(tmp_path: Path) -> None:
    """NODELOGS_SOURCES holds files, globs and journal units separated by commas."""
    config = load(env(tmp_path, NODELOGS_SOURCES="/var/log/*.log, journal:containerd ,"))
    assert config.sources == ("/var/log/*.log", "journal:containerd")


def test_proxy_variables_are_captured_in_both_cases(tmp_path: Path) -> None:
    """HTTP(S)_PROXY/NO_PROXY in either case are kept for the transport; nothing else."""
    config = load(env(tmp_path, https_proxy="http://p:3128", NO_PROXY=".internal", HOME="/root"))
    assert config.proxy_environ() == {"NO_PROXY": ".internal", "https_proxy": "http://p:3128"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"NODELOGS_CHUNK_BYTES": "ten"}, "chunk_bytes has a bad value"),
        ({"NODELOGS_CHUNK_BYTES": "100"}, "chunk_bytes must be between"),
        ({"NODELOGS_ENDPOINT": "keysvc:8080"}, "endpoint must be an http"),
        ({"NODELOGS_ENDPOINT": "http://[::1"}, "endpoint must be an http"),
        ({"NODELOGS_ENDPOINT": "https://keysvc:99999"}, "endpoint must be an http"),
        ({"NODELOGS_ENDPOINT": "https://keysvc:port"}, "endpoint must be an http"),
        ({"NODELOGS_BUCKET_URL": "https://[storage"}, "bucket_url must be an http"),
        ({"NODELOGS_BUCKET_URL": "storage.googleapis.com"}, "bucket_url must be an http"),
        ({"NODELOGS_PROBE_SECONDS": "10"}, "within 5 s"),
        ({"NODELOGS_JOURNAL_DIRECTORY": "var/log/journal"}, "journal_directory must be an absolute path"),
        ({"NODELOGS_JOURNAL_DIRECTORY": ""}, "journal_directory must be an absolute path"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    """Each invalid value raises ConfigError saying which setting is wrong."""
    with pytest.raises(ConfigError, match=message):
        load(env(tmp_path, **extra))


def test_only_the_endpoint_is_required(tmp_path: Path) -> None:
    """Cluster, node and region come from the key's record, so only a missing endpoint is an error."""
    config = load({"NODELOGS_ENDPOINT": "http://k"})
    assert (config.cluster, config.node, config.region) == (None, None, None)
    with pytest.raises(ConfigError, match="NODELOGS_ENDPOINT"):
        load({"NODELOGS_REGION": "eu"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"NODELOGS_NODE": ""}, "node is empty"),
        ({"NODELOGS_KEY_EXPIRES_AT": "soon"}, "NODELOGS_KEY_EXPIRES_AT: key_expires_at has a bad value"),
        ({"NODELOGS_KEY_EXPIRES_AT": "-5"}, "key_expires_at must be a positive"),
        ({"NODELOGS_KEY_EXPIRES_AT": "nan"}, "key_expires_at must be a positive"),
        ({"NODELOGS_STATE_DIR": "relative/dir"}, "state_dir must be an absolute path"),
        ({"NODELOGS_LOG_LEVEL": "verbose"}, "log_level must be one of debug, info, warning, error"),
    ],
)
def test_key_facts_are_checked(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    """An empty identity setting, a bad key expiry, a relative state_dir or unknown log level is an error."""
    with pytest.raises(ConfigError, match=message):
        load(env(tmp_path, **extra))


def test_key_expiry_is_read_as_unix_seconds(tmp_path: Path) -> None:
    """NODELOGS_KEY_EXPIRES_AT, as keysvc renders it into agent.env, becomes a float."""
    assert load(env(tmp_path, NODELOGS_KEY_EXPIRES_AT="1796112000.5")).key_expires_at == 1796112000.5


def test_unknown_toml_key_and_explicit_missing_file_are_errors(tmp_path: Path) -> None:
    """A typo in the TOML file is an error, and so is a config file named explicitly but absent."""
    toml = tmp_path / "agent.toml"
    toml.write_text("chunk_byte = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'chunk_byte'"):
        load(env(tmp_path, NODELOGS_CONFIG=str(toml)))
    with pytest.raises(ConfigError, match="does not exist"):
        load(env(tmp_path, NODELOGS_CONFIG=str(tmp_path / "nope.toml")))


def test_config_is_frozen(tmp_path: Path) -> None:
    """The configuration cannot be changed after loading."""
    config = load(env(tmp_path))
    with pytest.raises(AttributeError):
        config.chunk_bytes = 1  # type: ignore[misc]


def test_journal_directory_is_unset_by_default_and_read_from_toml_or_environment(tmp_path: Path) -> None:
    """Unset means the system journal; the TOML key sets it and NODELOGS_JOURNAL_DIRECTORY overrides it."""
    assert load(env(tmp_path)).journal_directory is None
    toml = tmp_path / "agent.toml"
    toml.write_text('journal_directory = "/var/log/journal/remote"\n')
    assert load(env(tmp_path, NODELOGS_CONFIG=str(toml))).journal_directory == "/var/log/journal/remote"
    config = load(env(tmp_path, NODELOGS_CONFIG=str(toml), NODELOGS_JOURNAL_DIRECTORY="/run/log/journal"))
    assert config.journal_directory == "/run/log/journal"


def test_repr_never_shows_a_proxy_password(tmp_path: Path) -> None:
    """The config's repr (in a traceback or a debug line) leaves out the proxy variables and passwords."""
    config = load(env(tmp_path, HTTPS_PROXY="http://user:s3cretpw@proxy:3128"))
    assert config.proxy_environ() == {"HTTPS_PROXY": "http://user:s3cretpw@proxy:3128"}
    assert "s3cretpw" not in repr(config)


def test_a_proxy_value_go_would_fail_on_is_a_config_error_at_load(tmp_path: Path) -> None:
    """An unusable proxy value stops loading with the variable named and the password hidden."""
    with pytest.raises(ConfigError, match=r"^https_proxy=http://user:\*\*\*@proxy:3128 is not") as caught:
        load(env(tmp_path, https_proxy="http://user:pa/ss@proxy:3128"))
    assert "pa/ss" not in str(caught.value)


def test_proxy_ca_file_is_read_from_the_environment(tmp_path: Path) -> None:
    """NODELOGS_PROXY_CA_FILE sets the CA bundle for an https:// proxy, apart from ca_file."""
    config = load(env(tmp_path, NODELOGS_PROXY_CA_FILE="/etc/ssl/proxy-ca.pem", HTTPS_PROXY="https://p:3128"))
    assert (config.proxy_ca_file, config.ca_file) == ("/etc/ssl/proxy-ca.pem", None)


def test_cgi_rule_refuses_http_proxy_for_an_http_endpoint_only(tmp_path: Path) -> None:
    """With REQUEST_METHOD set, HTTP_PROXY fails an http:// endpoint at start; https:// endpoints are fine."""
    cgi = {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://proxy:3128"}
    assert load(env(tmp_path, **cgi)).proxy_environ()["REQUEST_METHOD"] == "GET"
    with pytest.raises(ConfigError, match="REQUEST_METHOD is set, so HTTP_PROXY is refused"):
        load(env(tmp_path, **cgi, NODELOGS_ENDPOINT="http://keysvc.example.com"))
