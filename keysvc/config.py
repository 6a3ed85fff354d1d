"""keysvc configuration: read once, into frozen dataclasses. Nothing else in keysvc reads ``os.environ``.

**Precedence, for every setting:** a command-line flag, then its ``KEYSVC_*`` environment variable,
then the TOML file (``--config``, else ``$KEYSVC_CONFIG``; optional), then the default. A default may
be *derived*: the database, the audit signing key, the credentials file and the service-account file
default to files in the state directory (``state.dir``, ``--state-dir``, ``KEYSVC_STATE_DIR``), so
a state directory only ever moves the files that were not configured explicitly; it never replaces
a configured ``state.database``. :data:`ENV_VARS` names every setting's variable.

Example ``keysvc.toml``::

    [state]
    dir = "/var/lib/keysvc"         # where the defaults of the four files below live
    database = "sqlite:////var/lib/keysvc/keysvc.db"   # four slashes: absolute; or postgresql://...
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
    trusted_proxies = ["10.0.0.0/8"]   # peers whose X-Forwarded-For / Forwarded headers are believed
    tls_cert_file = ""              # both set: serve HTTPS, reloading the pair when the files change
    tls_key_file = ""
    revoke_on_replay = false        # a replayed user-data key also revokes the key and its session

    [gcs]
    signer = "key_file"             # or "iam": Application Default Credentials + IAM signBlob, no key file
    service_account_file = "/etc/keysvc/service-account.json"   # for key_file
    service_account_email = ""      # for iam; empty: the metadata server's default service account
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
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from keysvc.core import bucketnames
from keysvc.core.expiry import MAX_TTL_SECONDS, checked_ttl
from keysvc.core.grants import MAX_URL_TTL_SECONDS
from keysvc.core.models import Region
from keysvc.errors import ConfigError

DEFAULT_STATE_DIR = ".state"

#: The files a state directory holds, when they are not configured explicitly.
STATE_FILES = {
    ("state", "database"): "keysvc.db",
    ("state", "audit_signing_key"): "audit-signing-key.pem",
    ("server", "credentials_file"): "credentials.toml",
    ("gcs", "service_account_file"): "service-account.json",
}


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where keys and the audit chain live, and how long keys last."""

    dir: Path = Path(DEFAULT_STATE_DIR)
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
    trusted_proxies: tuple[str, ...] = ()
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    revoke_on_replay: bool = False


@dataclass(frozen=True, slots=True)
class GcsConfig:
    """How V4 URLs are signed and where the bucket is."""

    service_account_file: Path = Path(DEFAULT_STATE_DIR) / "service-account.json"
    endpoint: str = ""
    signer: str = "key_file"  # or "iam": metadata-server token + IAM Credentials signBlob, no key file
    service_account_email: str = ""  # for "iam"; empty: the metadata server's default account
    metadata_endpoint: str = "http://metadata.google.internal"
    iam_endpoint: str = "https://iamcredentials.googleapis.com"


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

    trust_dir: Path | None = None
    allowed_accounts: str = ""
    require: bool = False
    skew_seconds: float = 300.0


SECTIONS: dict[str, type[Any]] = {
    "state": StateConfig,
    "server": ServerConfig,
    "gcs": GcsConfig,
    "events": EventsConfig,
    "identity": IdentityConfig,
}


def env_var(section: str, key: str) -> str:
    """A setting's variable: ``KEYSVC_<KEY>`` in [state] and [server], else ``KEYSVC_<SECTION>_<KEY>``."""
    if (section, key) == ("state", "dir"):
        return "KEYSVC_STATE_DIR"
    if section in {"state", "server"}:
        return f"KEYSVC_{key.upper()}"
    return f"KEYSVC_{section.upper()}_{key.upper()}"


#: Every setting's environment variable, ``(section, key) -> name``.
ENV_VARS: dict[tuple[str, str], str] = {
    (section, f.name): env_var(section, f.name) for section, kind in SECTIONS.items() for f in fields(kind)
}


@dataclass(frozen=True, slots=True)
class Settings:
    """All of keysvc's configuration, and where each value came from."""

    state: StateConfig = field(default_factory=StateConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    gcs: GcsConfig = field(default_factory=GcsConfig)
    regions: Mapping[str, Region] = field(
        default_factory=lambda: {"local": Region(name="local", bucket="nodelogs-local")}
    )
    events: EventsConfig = field(default_factory=EventsConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    #: ``"section.key" -> "flag" | "env KEYSVC_X" | "file PATH" | "state.dir" | "default"``.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Resolve every setting: ``flags`` (``{"section.key": value}``), environment, file, default."""
        env = os.environ if environ is None else environ
        file = path or (Path(env["KEYSVC_CONFIG"]) if env.get("KEYSVC_CONFIG") else None)
        raw = _read_toml(file) if file is not None else {}
        return cls.from_layers(raw, env, flags or {}, origin=str(file) if file else "config")

    @classmethod
    def from_file(cls, path: Path) -> Settings:
        """Read a TOML file alone; unknown sections or keys are an error, not a silent no-op."""
        return cls.from_layers(_read_toml(path), {}, {}, origin=str(path))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], origin: str = "config") -> Settings:
        """Build settings from parsed TOML alone."""
        return cls.from_layers(raw, {}, {}, origin=origin)

    @classmethod
    def from_layers(
        cls, raw: Mapping[str, Any], env: Mapping[str, str], flags: Mapping[str, Any], origin: str
    ) -> Settings:
        """Merge file, environment and flags (each later layer wins), derive defaults, validate."""
        unknown = set(raw) - {*SECTIONS, "regions"}
        if unknown:
            raise ConfigError(f"{origin}: unknown section(s): {', '.join(sorted(unknown))}")
        values: dict[str, dict[str, Any]] = {}
        sources: dict[str, str] = {}
        for section, kind in SECTIONS.items():
            table = _section(kind, raw.get(section, {}), section, origin)
            sources.update({f"{section}.{k}": f"file {origin}" for k in table})
            for f in fields(kind):
                name = ENV_VARS[(section, f.name)]
                if env.get(name):
                    table[f.name] = _from_text(name, str(f.type), env[name])
                    sources[f"{section}.{f.name}"] = f"env {name}"
                if flags.get(f"{section}.{f.name}") is not None:
                    table[f.name] = flags[f"{section}.{f.name}"]
                    sources[f"{section}.{f.name}"] = "flag"
            values[section] = table
        state_dir = Path(values["state"].get("dir", DEFAULT_STATE_DIR))
        for (section, key), filename in STATE_FILES.items():
            if key not in values[section]:
                location = state_dir.absolute() / filename
                values[section][key] = f"sqlite:///{location}" if key == "database" else location
                sources[f"{section}.{key}"] = "state.dir"
        explicit_db = sources["state.database"]
        if explicit_db != "state.dir":
            _check_sqlite_path(values["state"]["database"], explicit_db)
        for section, kind in SECTIONS.items():
            for f in fields(kind):
                sources.setdefault(f"{section}.{f.name}", "default")
        settings = cls(
            state=StateConfig(**values["state"]),
            server=ServerConfig(**values["server"]),
            gcs=GcsConfig(**values["gcs"]),
            regions=_regions(raw.get("regions", {}), origin),
            events=EventsConfig(**values["events"]),
            identity=IdentityConfig(**values["identity"]),
            sources=sources,
        )
        return settings.validated()

    def validated(self) -> Settings:
        """Return self (its GCS endpoint normalised) if every value is usable, else raise ConfigError."""
        checked_ttl(self.state.key_ttl_seconds)
        if not 1 <= self.server.url_ttl_seconds <= MAX_URL_TTL_SECONDS:
            raise ConfigError(f"server.url_ttl_seconds must be 1..{MAX_URL_TTL_SECONDS}")
        if not 0 < self.server.port < 65536:
            raise ConfigError("server.port must be 1..65535")
        if self.server.auth_burst < 1 or self.server.auth_refill_per_second <= 0:
            raise ConfigError("server.auth_burst must be at least 1 and auth_refill_per_second positive")
        if self.server.max_chunk_bytes < 1 or self.server.max_body_bytes < 1024:
            raise ConfigError("server.max_chunk_bytes must be positive and max_body_bytes at least 1024")
        if (self.server.tls_cert_file is None) != (self.server.tls_key_file is None):
            raise ConfigError("server.tls_cert_file and server.tls_key_file must be set together")
        for entry in self.server.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ConfigError(f"server.trusted_proxies: {entry!r} is not an IP address or CIDR") from exc
        if not self.regions:
            raise ConfigError("at least one region must be configured")
        scheme = self.state.database.split("://", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ConfigError("state.database must start with sqlite:// or postgresql://")
        for region in self.regions.values():
            _check_region(region)
        gcs = _checked_gcs(self.gcs)
        return replace(self, gcs=gcs) if gcs != self.gcs else self


def _checked_gcs(gcs: GcsConfig) -> GcsConfig:
    """The [gcs] section checked, with a default port dropped from its endpoint."""
    if gcs.signer not in {"key_file", "iam"}:
        raise ConfigError(f"gcs.signer must be key_file or iam, not {gcs.signer!r}")
    for name in ("metadata_endpoint", "iam_endpoint"):
        if not getattr(gcs, name).startswith(("http://", "https://")):
            raise ConfigError(f"gcs.{name} must be an http:// or https:// URL")
    if not gcs.endpoint:
        return gcs
    endpoint, problem = bucketnames.normalised_endpoint(gcs.endpoint)
    if problem:
        raise ConfigError(f"gcs.endpoint {gcs.endpoint!r} {problem}")
    return replace(gcs, endpoint=endpoint)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _check_sqlite_path(database: str, source: str) -> None:
    """Refuse ``sqlite:///relative``: it silently resolves against whatever directory keysvc ran in."""
    prefix = "sqlite:///"
    if database.startswith(prefix) and len(database) > len(prefix) and not database.startswith(prefix + "/"):
        relative = database[len(prefix) :]
        raise ConfigError(
            f"state.database ({source}) names a relative SQLite path {relative!r}, which depends on the "
            f"working directory; write the absolute path with four slashes: sqlite:////{relative}"
        )


def _check_region(region: Region) -> None:
    where = f"regions.{region.name}"
    if problem := bucketnames.bucket_problem(region.bucket):
        raise ConfigError(f"{where}.bucket {region.bucket!r}: a GCS bucket name {problem}")
    if problem := bucketnames.prefix_problem(region.prefix):
        raise ConfigError(f"{where}.prefix {region.prefix!r} {problem}")
    if not region.endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.endpoint must be an http:// or https:// URL")


def _regions(raw: object, origin: str) -> Mapping[str, Region]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: [regions] must be a table of tables")
    if not raw:
        return {"local": Region(name="local", bucket="nodelogs-local")}
    regions = {}
    for name, table in raw.items():
        table_with_name = {"name": name, **table} if isinstance(table, dict) else table
        regions[name] = Region(**_section(Region, table_with_name, f"regions.{name}", origin))
    return regions


def _from_text(name: str, kind: str, text: str) -> Any:
    """Parse an environment variable's text as the setting's type; the error names the variable."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {'an integer' if kind == 'int' else 'a number'}") from exc
    if kind == "bool":
        if text.lower() not in {"1", "0", "true", "false", "yes", "no"}:
            raise ConfigError(f"{name} must be true or false")
        return text.lower() in {"1", "true", "yes"}
    if "Path" in kind:
        return Path(text)
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _section(kind: type[Any], table: object, name: str, origin: str) -> dict[str, Any]:
    """Check one TOML table against a dataclass's fields and return its converted values."""
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [{name}] must be a table")
    known = {f.name: str(f.type) for f in fields(kind)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        values[key] = _typed(known[key], value, f"{origin}: [{name}].{key}")
    return values


def _typed(kind: str, value: object, where: str) -> Any:
    if "Path" in kind:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string path")
        return Path(value) if value or "None" not in kind else None
    if kind.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return tuple(value)
    wanted: tuple[type, ...] = {"bool": (bool,), "int": (int,), "float": (int, float)}.get(kind, (str,))
    if not isinstance(value, wanted) or (kind in {"int", "float"} and isinstance(value, bool)):
        raise ConfigError(f"{where} must be of type {kind}")
    return value
