"""The agent's configuration, read once into a frozen :class:`AgentConfig`.

Precedence, lowest first: built-in defaults, the TOML file (``NODELOGS_CONFIG``, default
``/etc/nodelogs/agent.toml``, optional), environment variables (``NODELOGS_*``, usually from the systemd
``EnvironmentFile=/etc/nodelogs/agent.env``), then command-line flags. Nothing else reads ``os.environ``:
the entry point hands the environment in as a mapping.

TOML keys are the field names below (``endpoint``, ``sources``, ``chunk_bytes``, ...). Environment
variables are ``NODELOGS_`` plus the field name in upper case; ``NODELOGS_SOURCES`` is comma separated.
The key itself never comes from here: only its file's path does (see :mod:`agent.keyfile`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import ConfigError
from agent.proxyconfig import ProxyConfig

DEFAULT_SOURCES = ("/var/log/cloud-init-output.log", "/var/log/cloud-init.log")
DEFAULT_CONFIG_FILE = "/etc/nodelogs/agent.toml"
#: Read for :class:`agent.proxyconfig.ProxyConfig`; REQUEST_METHOD is Go's CGI rule.
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "REQUEST_METHOD",
)
MAX_OBJECTS_PER_GRANT = 64
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything ``nodelogs-agent`` needs to run; the module docstring says where each value comes from."""

    endpoint: str
    #: Optional checks: the node's cluster, node and region come from the key's record at keysvc.
    #: A value given here that disagrees with the record is a configuration error (exit 2).
    cluster: str | None = None
    node: str | None = None
    region: str | None = None
    #: The key's expiry (Unix seconds), which keysvc renders into agent.env: an upper bound on
    #: the agent's life until keysvc answers (see :mod:`agent.lifetime`).
    key_expires_at: float | None = None
    sources: tuple[str, ...] = DEFAULT_SOURCES
    key_file: str = "/etc/nodelogs/key"
    state_dir: str = "/var/lib/nodelogs-agent"
    #: A chunk is cut when this many bytes are pending (default 1 MiB) ...
    chunk_bytes: int = 1024 * 1024
    #: ... or when the oldest pending byte has waited this long (default 2 s).
    chunk_seconds: float = 2.0
    #: A last line without a newline is shipped once the file has been quiet this long.
    partial_line_seconds: float = 5.0
    #: How often sources are checked for new data (no busy loop; 250 ms).
    poll_seconds: float = 0.25
    #: How often globs are expanded again to find files that appear later.
    discover_seconds: float = 1.0
    #: How often each source logs a ``source_progress`` line (bytes shipped, lag, generation).
    progress_seconds: float = 30.0
    #: How often an idle agent asks keysvc whether its key still holds (revocation within 5 s).
    probe_seconds: float = 2.0
    #: The final flush starts this long before the key expires (by keysvc's clock).
    expiry_margin_seconds: float = 15.0
    #: How long a SIGTERM flush may keep retrying before it gives up (data stays on disk for the next run).
    stop_flush_seconds: float = 20.0
    #: Chunks staged per source before one grant request asks for all their URLs.
    chunks_per_batch: int = 8
    #: PUTs of one batch in flight at once.
    put_concurrency: int = 4
    #: zlib level 1: about half the CPU of level 6 for objects about a quarter larger; CPU is scarce at boot.
    gzip_level: int = 1
    request_timeout: float = 30.0
    retry_max_wait: float = 10.0
    #: CA bundle for the endpoints' certificates (a TLS-inspecting proxy, a private CA); unset: system CAs.
    ca_file: str | None = None
    #: CA bundle for an ``https://`` proxy's own certificate; unset: ``ca_file``, else the system CAs.
    proxy_ca_file: str | None = None
    #: Where ``journal:<unit>`` sources are read from (``journalctl --directory``); unset: the system journal.
    journal_directory: str | None = None
    bucket_url: str = "https://storage.googleapis.com"
    log_level: str = "info"
    #: Left out of ``repr``: a proxy URL may carry a password.
    proxy_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def proxy_environ(self) -> dict[str, str]:
        """Return the proxy variables the agent was started with, for ``ProxyConfig.from_env``."""
        return dict(self.proxy_env)

    def validate(self) -> AgentConfig:
        """Check every value; raise :class:`ConfigError` naming the first bad one."""
        if not self.endpoint:
            raise ConfigError("endpoint is required (NODELOGS_ENDPOINT or --endpoint)")
        _check_key_facts(self)
        _http_url("endpoint", self.endpoint)
        _http_url("bucket_url", self.bucket_url)
        if not self.sources:
            raise ConfigError("at least one source is required")
        # Incompressible data gzips to slightly more than its size; keysvc signs a size bound into each
        # URL (server.max_chunk_bytes, 8 MiB by default), so chunks stay well below it.
        if not 4096 <= self.chunk_bytes <= 4 * 1024 * 1024:
            raise ConfigError("chunk_bytes must be between 4096 and 4194304 (keysvc bounds object size)")
        if not 1 <= self.chunks_per_batch <= MAX_OBJECTS_PER_GRANT:
            raise ConfigError(f"chunks_per_batch must be between 1 and {MAX_OBJECTS_PER_GRANT}")
        if not 1 <= self.put_concurrency <= 16:
            raise ConfigError("put_concurrency must be between 1 and 16")
        if not 0 <= self.gzip_level <= 9:
            raise ConfigError("gzip_level must be between 0 and 9")
        for name in (
            "chunk_seconds",
            "partial_line_seconds",
            "poll_seconds",
            "discover_seconds",
            "probe_seconds",
            "progress_seconds",
            "request_timeout",
            "retry_max_wait",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.probe_seconds > 4.0:
            raise ConfigError("probe_seconds must be at most 4 so a revocation stops the agent within 5 s")
        if self.expiry_margin_seconds < 0 or self.stop_flush_seconds < 0:
            raise ConfigError("expiry_margin_seconds and stop_flush_seconds must not be negative")
        _absolute_or_unset("journal_directory", self.journal_directory)
        self._validate_proxies()
        return self

    def _validate_proxies(self) -> None:
        """Parse the proxy variables now, so a value Go would fail on stops the agent at start (exit 2)."""
        proxies = ProxyConfig.from_env(self.proxy_environ())
        for url in (self.endpoint, self.bucket_url):
            proxies.decide(url)


def _check_key_facts(config: AgentConfig) -> None:
    for name in ("cluster", "node", "region"):
        if getattr(config, name) == "":
            raise ConfigError(f"{name} is empty: leave it unset, or give the key's {name}")
    if config.key_expires_at is not None and not 0 < config.key_expires_at < float("inf"):
        raise ConfigError("key_expires_at must be a positive number of Unix seconds")
    _absolute_or_unset("state_dir", config.state_dir)
    if config.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")


def _http_url(name: str, value: str) -> None:
    try:
        parts = urlsplit(value)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # parsed lazily: a non-numeric or out-of-range port raises here
    except ValueError:
        usable = False
    if not usable:
        raise ConfigError(f"{name} must be an http(s) URL with a host and a valid port, got {value!r}")


def _absolute_or_unset(name: str, value: str | None) -> None:
    if value is not None and not Path(value).is_absolute():
        raise ConfigError(f"{name} must be an absolute path, got {value!r}")


_FIELDS = {f.name: f for f in fields(AgentConfig)}
_FLOATS = {name for name, f in _FIELDS.items() if f.type in ("float", "float | None")}
_INTS = {name for name, f in _FIELDS.items() if f.type == "int"}
_NOT_SETTABLE = {"proxy_env"}


def _coerce(name: str, value: Any, origin: str) -> Any:
    if name not in _FIELDS or name in _NOT_SETTABLE:
        raise ConfigError(f"{origin}: unknown setting {name!r}")
    bad = ConfigError(f"{origin}: {name} has a bad value {value!r}")
    if name == "sources":
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
        if items is None:
            raise bad
        return tuple(str(item).strip() for item in items if str(item).strip())
    if name in _INTS or name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad
        try:
            return int(value) if name in _INTS else float(value)
        except ValueError as exc:
            raise bad from exc
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {name} must be a string")
    return value


def _from_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        if required:
            raise ConfigError(f"config file {path} does not exist") from exc
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return {name: _coerce(name, value, str(path)) for name, value in data.items()}


def load(environ: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> AgentConfig:
    """Build the configuration from the TOML file, the environment and flags (``None`` flags are unset)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    config_path = flags.pop("config", None) or environ.get("NODELOGS_CONFIG")
    settings: dict[str, Any] = _from_toml(
        Path(config_path or DEFAULT_CONFIG_FILE), required=bool(config_path)
    )
    for name in _FIELDS:
        value = environ.get(f"NODELOGS_{name.upper()}")
        if value is not None and name not in _NOT_SETTABLE:
            settings[name] = _coerce(name, value, f"NODELOGS_{name.upper()}")
    for name, value in flags.items():
        settings[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    if "endpoint" not in settings:
        raise ConfigError("missing required setting: NODELOGS_ENDPOINT")
    config = AgentConfig(**settings)
    proxy_env = tuple((name, environ[name]) for name in PROXY_VARIABLES if name in environ)
    return replace(config, proxy_env=proxy_env).validate()
