"""keysvc configuration: read once, from a TOML file and then ``KEYSVC_*`` environment variables.

Nothing else in keysvc reads ``os.environ``. Every section is a frozen dataclass. The file is
optional; without one, keysvc runs on the embedded default: SQLite and signing keys in ``./.state``.

Example ``keysvc.toml``::

    [state]
    database = "sqlite:///var/lib/keysvc/keysvc.db"   # or "postgresql://user@host/db"
    audit_signing_key = "/var/lib/keysvc/audit-signing-key.pem"
    key_ttl_seconds = 3600          # may be shortened for tests and demos, never lengthened
    sweep_interval_seconds = 60

    [server]
    host = "127.0.0.1"
    port = 8080
    credentials_file = "/etc/keysvc/credentials.toml"
    url_ttl_seconds = 300           # signed URL lifetime; at most 900
    max_chunk_bytes = 8388608       # bound signed into x-goog-content-length-range
    max_body_bytes = 65536
    auth_burst = 10                 # failed authentications one source address may make in a burst
    auth_refill_per_second = 0.5    # ... and how fast it regains them
    graceful_seconds = 10           # how long requests in flight may finish on SIGTERM
    revoke_on_replay = false        # a replayed user-data key also revokes the key and its session

    [gcs]
    service_account_file = "/etc/keysvc/service-account.json"
    endpoint = ""                   # empty: real GCS; else an emulator such as http://127.0.0.1:4443

    [regions.eu]
    bucket = "nodelogs-eu"
    prefix = "nodelogs"
    endpoint = "https://keysvc.eu.example.com"   # the keysvc URL agents in this region use

    [identity]                      # EC2 instance identity documents sent with the exchange
    trust_dir = ""                  # AWS's RSA certificates, one <region>.pem each; empty: none trusted
    allowed_accounts = ""           # comma-separated AWS account ids; empty: any
    require = false                 # true: no verified document, no session
    skew_seconds = 300              # pendingTime may precede the AddNode's start by this much

    [events]
    queue_url = ""                  # SQS queue fed by the EventBridge rule; empty disables
    aws_region = "us-east-1"
    endpoint_url = ""               # empty: real AWS; else moto's server
    in_serve = false                # also consume events inside `keysvc serve`

Environment overrides: ``KEYSVC_CONFIG`` (the file), ``KEYSVC_DATABASE``, ``KEYSVC_STATE_DIR``,
``KEYSVC_AUDIT_SIGNING_KEY``, ``KEYSVC_KEY_TTL_SECONDS``, ``KEYSVC_HOST``, ``KEYSVC_PORT``,
``KEYSVC_CREDENTIALS_FILE``, ``KEYSVC_GCS_SERVICE_ACCOUNT_FILE``, ``KEYSVC_GCS_ENDPOINT``,
``KEYSVC_EVENTS_QUEUE_URL``, ``KEYSVC_EVENTS_ENDPOINT_URL``, ``KEYSVC_EVENTS_AWS_REGION``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from keysvc.core.expiry import MAX_TTL_SECONDS, checked_ttl
from keysvc.core.grants import MAX_URL_TTL_SECONDS
from keysvc.core.models import Region
from keysvc.errors import ConfigError

DEFAULT_STATE_DIR = ".state"


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where keys and the audit chain live, and how long keys last."""

    database: str = f"sqlite:///{DEFAULT_STATE_DIR}/keysvc.db"
    audit_signing_key: Path = Path(DEFAULT_STATE_DIR) / "audit-signing-key.pem"
    key_ttl_seconds: int = MAX_TTL_SECONDS
    sweep_interval_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP service."""

    host: str = "127.0.0.1"
    port: int = 8080
    credentials_file: Path = Path(DEFAULT_STATE_DIR) / "credentials.toml"
    url_ttl_seconds: int = 300
    max_chunk_bytes: int = 8 * 1024 * 1024
    max_body_bytes: int = 64 * 1024
    max_objects_per_grant: int = 64
    auth_burst: int = 10
    auth_refill_per_second: float = 0.5
    graceful_seconds: float = 10.0
    revoke_on_replay: bool = False


@dataclass(frozen=True, slots=True)
class GcsConfig:
    """How V4 URLs are signed and where the bucket is."""

    service_account_file: Path = Path(DEFAULT_STATE_DIR) / "service-account.json"
    endpoint: str = ""


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """The SQS queue that carries EC2 termination events."""

    queue_url: str = ""
    aws_region: str = "us-east-1"
    endpoint_url: str = ""
    in_serve: bool = False
    wait_seconds: int = 20


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Instance identity documents: the trust directory and what a cluster requires of them."""

    trust_dir: Path = Path()
    allowed_accounts: str = ""
    require: bool = False
    skew_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Settings:
    """All of keysvc's configuration."""

    state: StateConfig = field(default_factory=StateConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    gcs: GcsConfig = field(default_factory=GcsConfig)
    regions: Mapping[str, Region] = field(
        default_factory=lambda: {"local": Region(name="local", bucket="nodelogs-local")}
    )
    events: EventsConfig = field(default_factory=EventsConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)

    @classmethod
    def load(cls, path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the file named by ``path`` or ``KEYSVC_CONFIG`` (if any), then apply the environment."""
        env = os.environ if environ is None else environ
        file = path or (Path(env["KEYSVC_CONFIG"]) if env.get("KEYSVC_CONFIG") else None)
        settings = cls.from_file(file) if file is not None else cls()
        return settings.with_env(env)

    @classmethod
    def from_file(cls, path: Path) -> Settings:
        """Read a TOML file; unknown sections or keys are an error, not a silent no-op."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(raw, origin=str(path))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], origin: str = "config") -> Settings:
        """Build settings from parsed TOML."""
        known = {"state", "server", "gcs", "regions", "events", "identity"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{origin}: unknown section(s): {', '.join(sorted(unknown))}")
        regions_raw = raw.get("regions", {})
        if not isinstance(regions_raw, dict):
            raise ConfigError(f"{origin}: [regions] must be a table of tables")
        defaults = cls()
        regions = (
            {
                name: _section(Region, {"name": name, **table}, f"regions.{name}", origin)
                for name, table in regions_raw.items()
            }
            if regions_raw
            else defaults.regions
        )
        settings = cls(
            state=_section(StateConfig, raw.get("state", {}), "state", origin),
            server=_section(ServerConfig, raw.get("server", {}), "server", origin),
            gcs=_section(GcsConfig, raw.get("gcs", {}), "gcs", origin),
            regions=regions,
            events=_section(EventsConfig, raw.get("events", {}), "events", origin),
            identity=_section(IdentityConfig, raw.get("identity", {}), "identity", origin),
        )
        return settings.validated()

    def with_env(self, env: Mapping[str, str]) -> Settings:
        """Apply ``KEYSVC_*`` overrides."""
        state, server, gcs, events = self.state, self.server, self.gcs, self.events
        if state_dir := env.get("KEYSVC_STATE_DIR"):
            state = replace(
                state,
                database=f"sqlite:///{state_dir}/keysvc.db",
                audit_signing_key=Path(state_dir) / "audit-signing-key.pem",
            )
            server = replace(server, credentials_file=Path(state_dir) / "credentials.toml")
            gcs = replace(gcs, service_account_file=Path(state_dir) / "service-account.json")
        if value := env.get("KEYSVC_DATABASE"):
            state = replace(state, database=value)
        if value := env.get("KEYSVC_AUDIT_SIGNING_KEY"):
            state = replace(state, audit_signing_key=Path(value))
        if value := env.get("KEYSVC_KEY_TTL_SECONDS"):
            state = replace(state, key_ttl_seconds=_int("KEYSVC_KEY_TTL_SECONDS", value))
        if value := env.get("KEYSVC_HOST"):
            server = replace(server, host=value)
        if value := env.get("KEYSVC_PORT"):
            server = replace(server, port=_int("KEYSVC_PORT", value))
        if value := env.get("KEYSVC_CREDENTIALS_FILE"):
            server = replace(server, credentials_file=Path(value))
        if value := env.get("KEYSVC_GCS_SERVICE_ACCOUNT_FILE"):
            gcs = replace(gcs, service_account_file=Path(value))
        if value := env.get("KEYSVC_GCS_ENDPOINT"):
            gcs = replace(gcs, endpoint=value)
        if value := env.get("KEYSVC_EVENTS_QUEUE_URL"):
            events = replace(events, queue_url=value)
        if value := env.get("KEYSVC_EVENTS_ENDPOINT_URL"):
            events = replace(events, endpoint_url=value)
        if value := env.get("KEYSVC_EVENTS_AWS_REGION"):
            events = replace(events, aws_region=value)
        return replace(self, state=state, server=server, gcs=gcs, events=events).validated()

    def validated(self) -> Settings:
        """Return self if every value is usable, else raise :class:`ConfigError`."""
        checked_ttl(self.state.key_ttl_seconds)
        if not 1 <= self.server.url_ttl_seconds <= MAX_URL_TTL_SECONDS:
            raise ConfigError(f"server.url_ttl_seconds must be 1..{MAX_URL_TTL_SECONDS}")
        if not 0 < self.server.port < 65536:
            raise ConfigError("server.port must be 1..65535")
        if self.server.auth_burst < 1 or self.server.auth_refill_per_second <= 0:
            raise ConfigError("server.auth_burst must be at least 1 and auth_refill_per_second positive")
        if self.server.max_chunk_bytes < 1 or self.server.max_body_bytes < 1024:
            raise ConfigError("server.max_chunk_bytes must be positive and max_body_bytes at least 1024")
        if not self.regions:
            raise ConfigError("at least one region must be configured")
        scheme = self.state.database.split("://", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ConfigError("state.database must start with sqlite:// or postgresql://")
        return self


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def _section(kind: type[Any], table: object, name: str, origin: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [{name}] must be a table")
    fields = kind.__dataclass_fields__
    unknown = set(table) - set(fields)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        expected = fields[key].type
        if "Path" in str(expected):
            if not isinstance(value, str):
                raise ConfigError(f"{origin}: [{name}].{key} must be a string path")
            values[key] = Path(value)
            continue
        kind_name = str(expected)
        wanted: tuple[type, ...] = (
            (bool,)
            if kind_name == "bool"
            else (int,)
            if kind_name == "int"
            else (int, float)
            if kind_name == "float"
            else (str,)
        )
        if not isinstance(value, wanted) or (kind_name in {"int", "float"} and isinstance(value, bool)):
            raise ConfigError(f"{origin}: [{name}].{key} must be of type {kind_name}")
        values[key] = value
    return kind(**values)
