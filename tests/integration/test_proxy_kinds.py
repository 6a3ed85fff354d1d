"""The real agent through every kind of proxy a node is given, each a real server on loopback.

- ``http://``: tinyproxy;
- ``https://``: stunnel (TLS, a certificate from a CA made at run time) in front of tinyproxy, so
  TLS to the proxy and, for an HTTPS bucket, TLS to the bucket inside it;
- ``socks5h://`` with a password and ``socks5://`` without: Debian's microsocks.

Each run ships a log byte-exact to fake-gcs-server through real keysvc; the proxy's own log shows
the bucket traffic, and keysvc, named in NO_PROXY, is reached without the proxy. Then the bad
inputs: an untrusted proxy certificate, wrong passwords, a refusing SOCKS server, malformed URLs
and an unsupported scheme, each with a clear error that carries no secret.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.errors import ProxyAuthFailed, ProxyRefused, ProxyUntrusted
from agent.proxyconfig import ProxyConfig
from agent.transport import Transport
from keysvc.devtools import emulator
from tests import certs, servers
from tests.agent import stack

pytestmark = pytest.mark.integration

PROXY_PASSWORD = "pr0xy"  # tinyproxy_open's BasicAuth (tests/conftest.py)
SOCKS_PASSWORD = "s0cks/p@ss"  # needs percent-encoding in a URL


@dataclass
class Pki:
    """Two throwaway CAs: one signs the https:// proxy's certificate, the other the HTTPS bucket's."""

    host: str
    proxy_ca: Path
    proxy_cert: tuple[Path, Path]
    bucket_ca: Path
    bucket_cert: tuple[Path, Path]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CAs and certificates for the loopback host name, generated now (no key is in the repository)."""
    host = servers.loopback_hostname()
    proxy_ca, proxy_cert, proxy_key = certs.write_ca_signed_cert(tmp_path_factory.mktemp("proxy-pki"), [host])
    bucket_ca, bucket_cert, bucket_key = certs.write_ca_signed_cert(
        tmp_path_factory.mktemp("bucket-pki"), [host]
    )
    return Pki(host, proxy_ca, (proxy_cert, proxy_key), bucket_ca, (bucket_cert, bucket_key))


@pytest.fixture(scope="module")
def https_proxy(tinyproxy_open: servers.Server, pki: Pki) -> Iterator[servers.Server]:
    """An https:// forward proxy: stunnel with the proxy CA's certificate before tinyproxy (Basic auth)."""
    with servers.running(servers.start_stunnel, tinyproxy_open.port, *pki.proxy_cert) as stunnel:
        stunnel.extra["proxy_log"] = tinyproxy_open.extra["log"]
        yield stunnel


@pytest.fixture(scope="module")
def socks_auth() -> Iterator[servers.Server]:
    """microsocks wanting the user ``agent`` and SOCKS_PASSWORD."""
    with servers.running(servers.start_microsocks, ("agent", SOCKS_PASSWORD)) as server:
        yield server


@pytest.fixture(scope="module")
def socks_open() -> Iterator[servers.Server]:
    """microsocks without authentication."""
    with servers.running(servers.start_microsocks) as server:
        yield server


def _log(path: str) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


@dataclass
class Cloud:
    """fake-gcs-server (maybe behind a TLS front) and keysvc signing URLs for it."""

    host: str
    gcs_url: str  # the emulator's own plain address, for reading back
    bucket_url: str  # what the agent and signed URLs use
    bucket_hostport: str
    keysvc: stack.Keysvc


@pytest.fixture
def cloud(tmp_path: Path, pki: Pki, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    """fake-gcs-server plus keysvc; with ``tls`` (indirect parameter) the bucket is HTTPS through stunnel."""
    tls = bool(getattr(request, "param", False))
    host = pki.host
    gcs_port = servers.free_port()
    front = servers.start_stunnel(gcs_port, *pki.bucket_cert) if tls else None
    public_port = front.port if front is not None else gcs_port
    gcs = subprocess.Popen(
        [
            *(
                str(servers.fake_gcs_binary()),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(gcs_port),
            ),
            *("-public-host", f"{host}:{public_port}", "-backend", "memory", "-log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    keysvc = None
    try:
        gcs_url = f"http://{host}:{gcs_port}"
        servers.wait_until(lambda: servers.http_ok(f"{gcs_url}/storage/v1/b"), what="fake-gcs-server")
        emulator.create_buckets(gcs_url, [stack.BUCKET])
        bucket_url = f"{'https' if tls else 'http'}://{host}:{public_port}"
        keysvc = stack.Keysvc(tmp_path / "keysvc", bucket_url).prepare().start()
        yield Cloud(host, gcs_url, bucket_url, f"{host}:{public_port}", keysvc)
    finally:
        if keysvc is not None:
            keysvc.stop()
        gcs.terminate()
        gcs.wait(10)
        if front is not None:
            front.close()


def _ship(tmp_path: Path, cloud: Cloud, name: str, proxy_env: dict[str, str]) -> str:
    """`check`, then `run`, with these proxy settings; the log must land byte-exact; return check's output."""
    keysvc_hostport = f"{cloud.host}:{cloud.keysvc.port}"
    env = {
        "NODELOGS_ENDPOINT": f"http://{keysvc_hostport}",
        "NODELOGS_BUCKET_URL": cloud.bucket_url,
        "no_proxy": keysvc_hostport,
        **proxy_env,
    }
    source = tmp_path / f"{name}.log"
    node = stack.Node(tmp_path / name, cloud.keysvc, name, (str(source),), extra_env=env).provision()
    toml = "chunk_bytes = 16384\nchunk_seconds = 0.3\npartial_line_seconds = 0.5\n"
    (node.root / "agent.toml").write_text(toml)
    check = subprocess.run(
        [str(stack.BIN / "nodelogs-agent"), "check"],
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"direct (no_proxy entry '{keysvc_hostport}' matched" in check.stdout
    assert node.key not in check.stdout + check.stderr
    data = b"".join(b"cloud-init[%d]: line %d via %s\n" % (i, i, name.encode()) for i in range(3000)) + b"end"
    source.write_bytes(data)
    node.start(toml)
    servers.wait_until(
        lambda: stack.landed(cloud.gcs_url, node.name, source, 1, data),
        timeout=60,
        what="the log in the bucket",
    )
    assert node.terminate() == 0
    return check.stdout


@pytest.mark.parametrize("cloud", [True], indirect=True, ids=["https-bucket"])
def test_agent_ships_through_an_https_proxy_with_tls_in_tls(
    tmp_path: Path, cloud: Cloud, https_proxy: servers.Server, pki: Pki
) -> None:
    """TLS to the proxy (own CA), CONNECT with Basic auth, TLS to the bucket inside: the log lands exactly."""
    proxy_url = f"https://agent:{PROXY_PASSWORD}@{pki.host}:{https_proxy.port}"
    env = {
        "HTTPS_PROXY": proxy_url,
        "HTTP_PROXY": proxy_url,
        "NODELOGS_PROXY_CA_FILE": str(pki.proxy_ca),
        "NODELOGS_CA_FILE": str(pki.bucket_ca),
    }
    out = _ship(tmp_path, cloud, "via-https-proxy", env)
    assert f"via HTTPS (TLS to the proxy) proxy https://agent:***@{pki.host}:{https_proxy.port}" in out
    assert f"tls:     proxy {pki.host}:{https_proxy.port}: TLSv1." in out
    assert f"tls:     target {cloud.bucket_hostport}: TLSv1." in out
    assert PROXY_PASSWORD not in out
    log = _log(https_proxy.extra["proxy_log"])
    assert f"CONNECT {cloud.bucket_hostport}" in log
    assert f":{cloud.keysvc.port}" not in log


def test_agent_ships_through_an_https_proxy_to_an_http_bucket(
    tmp_path: Path, cloud: Cloud, https_proxy: servers.Server, pki: Pki
) -> None:
    """An http:// bucket through an https:// proxy: absolute-form PUTs inside TLS to the proxy."""
    env = {
        "HTTP_PROXY": f"https://agent:{PROXY_PASSWORD}@{pki.host}:{https_proxy.port}",
        "NODELOGS_PROXY_CA_FILE": str(pki.proxy_ca),
    }
    _ship(tmp_path, cloud, "via-https-proxy-plain", env)
    log = _log(https_proxy.extra["proxy_log"])
    assert (
        f"PUT {cloud.bucket_url}/{stack.BUCKET}/{stack.PREFIX}/{stack.CLUSTER}/via-https-proxy-plain/" in log
    )
    assert f":{cloud.keysvc.port}" not in log


def test_agent_ships_through_socks5h_with_a_password(
    tmp_path: Path, cloud: Cloud, socks_auth: servers.Server
) -> None:
    """socks5h:// with RFC 1929 auth (a percent-encoded password): the proxy resolves the bucket's name."""
    password = SOCKS_PASSWORD.replace("/", "%2F").replace("@", "%40")
    url = f"socks5h://agent:{password}@127.0.0.1:{socks_auth.port}"
    out = _ship(tmp_path, cloud, "via-socks5h", {"HTTP_PROXY": url})
    assert f"via SOCKS5 proxy socks5h://agent:***@127.0.0.1:{socks_auth.port}" in out
    assert "s0cks" not in out
    log = _log(socks_auth.extra["log"])
    assert f"connected to {cloud.bucket_hostport}" in log
    assert f":{cloud.keysvc.port}" not in log


def test_agent_ships_through_socks5_without_auth(
    tmp_path: Path, cloud: Cloud, socks_open: servers.Server
) -> None:
    """socks5:// without auth: the agent resolves the bucket's name itself and hands the proxy an address."""
    _ship(tmp_path, cloud, "via-socks5", {"HTTP_PROXY": f"socks5://127.0.0.1:{socks_open.port}"})
    log = _log(socks_open.extra["log"])
    port = cloud.bucket_hostport.rsplit(":", 1)[1]
    assert f"connected to 127.0.0.1:{port}" in log
    assert f"connected to {cloud.bucket_hostport}" not in log
    assert f":{cloud.keysvc.port}" not in log


def _empty_toml(folder: Path) -> Path:
    path = folder / "agent.toml"
    path.write_text("")
    return path


# -- bad input ------------------------------------------------------------------------------------


def test_proxy_certificate_from_an_unknown_ca_is_untrusted(https_proxy: servers.Server, pki: Pki) -> None:
    """Without the proxy's CA, TLS to the proxy fails as ProxyUntrusted, naming it, without the password."""
    config = ProxyConfig(https_proxy=f"https://agent:{PROXY_PASSWORD}@{pki.host}:{https_proxy.port}")
    with (
        Transport(config, timeout=10, ca_file=str(pki.bucket_ca)) as transport,
        pytest.raises(ProxyUntrusted) as caught,
    ):
        transport.request("GET", f"https://{pki.host}:9/")
    message = str(caught.value)
    assert f"TLS to proxy https://agent:***@{pki.host}:{https_proxy.port} failed" in message
    assert "certificate is not trusted" in message
    assert PROXY_PASSWORD not in message


def test_wrong_password_to_the_https_proxy_is_an_auth_failure(https_proxy: servers.Server, pki: Pki) -> None:
    """tinyproxy behind TLS refusing the password: ProxyAuthFailed with the status, not the password."""
    config = ProxyConfig(https_proxy=f"https://agent:Wr0ngPass@{pki.host}:{https_proxy.port}")
    with (
        Transport(config, timeout=10, proxy_ca_file=str(pki.proxy_ca)) as transport,
        pytest.raises(ProxyAuthFailed) as caught,
    ):
        transport.request("GET", f"https://{pki.host}:9/")
    assert "401 Unauthorized (credentials were refused)" in str(caught.value)  # tinyproxy's answer
    assert "Wr0ngPass" not in str(caught.value)


def test_wrong_socks_password_is_an_auth_failure(socks_auth: servers.Server, pki: Pki) -> None:
    """microsocks refusing the password: ProxyAuthFailed, without the password."""
    config = ProxyConfig(https_proxy=f"socks5h://agent:Wr0ngPass@127.0.0.1:{socks_auth.port}")
    with Transport(config, timeout=10) as transport, pytest.raises(ProxyAuthFailed) as caught:
        transport.request("GET", f"https://{pki.host}:9/")
    assert "refused the SOCKS5 user name or password" in str(caught.value)
    assert "Wr0ngPass" not in str(caught.value)


def test_socks_server_that_refuses_the_target(socks_open: servers.Server, pki: Pki) -> None:
    """microsocks cannot reach a closed port and says so: ProxyRefused naming the target and the reason."""
    closed = servers.free_port()
    config = ProxyConfig(https_proxy=f"socks5h://127.0.0.1:{socks_open.port}")
    with Transport(config, timeout=10) as transport, pytest.raises(ProxyRefused) as caught:
        transport.request("GET", f"https://{pki.host}:{closed}/")
    assert f"refused to connect to {pki.host}:{closed}" in str(caught.value)


def test_check_names_the_fix_for_an_untrusted_proxy_and_a_refused_password(
    tmp_path: Path, https_proxy: servers.Server, socks_auth: servers.Server, pki: Pki
) -> None:
    """`nodelogs-agent check` fails with one fix per endpoint: the proxy CA, then the credentials."""
    base = {
        "NODELOGS_ENDPOINT": f"https://{pki.host}:9",
        "NODELOGS_BUCKET_URL": f"https://{pki.host}:9",
        "NODELOGS_CLUSTER": "c1",
        "NODELOGS_NODE": "n1",
        "NODELOGS_REGION": "local",
        "NODELOGS_KEY_FILE": str(tmp_path / "absent-key"),
        "NODELOGS_CONFIG": str(_empty_toml(tmp_path)),
        "PATH": "/usr/bin:/bin",
    }
    untrusted = {**base, "HTTPS_PROXY": f"https://agent:{PROXY_PASSWORD}@{pki.host}:{https_proxy.port}"}
    result = servers.run_cli(["nodelogs-agent", "check"], env=untrusted, check=False)
    assert result.returncode == 1
    assert "set NODELOGS_PROXY_CA_FILE to the CA bundle that signed it" in result.stdout
    socks = {**base, "HTTPS_PROXY": f"socks5://agent:Wr0ngPass@127.0.0.1:{socks_auth.port}"}
    result = servers.run_cli(["nodelogs-agent", "check"], env=socks, check=False)
    assert result.returncode == 1
    assert "refused the SOCKS5 user name or password" in result.stdout
    assert "put the proxy's user and password in the proxy URL, percent-encoded" in result.stdout
    for text in (result.stdout, result.stderr):
        assert PROXY_PASSWORD not in text
        assert "Wr0ngPass" not in text


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("HTTPS_PROXY", "http://agent:Sup3r/Secret@proxy.example:3128", "the port is not a number"),
        ("https_proxy", "http://agent:Sup3r#Secret@proxy.example:3128", "the port is not a number"),
        ("HTTP_PROXY", "http://agent:Sup3r%zzSecret@proxy.example:3128", "malformed percent escape"),
        ("HTTPS_PROXY", "socks4://agent:Sup3rSecret@proxy.example:1080", "unsupported proxy scheme 'socks4'"),
        ("HTTPS_PROXY", "ftp://proxy.example:21", "unsupported proxy scheme 'ftp'"),
        ("HTTPS_PROXY", " http://proxy.example:3128", "whitespace"),
    ],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_bad_proxy_value_exits_2_at_once_naming_the_variable(
    tmp_path: Path, command: str, variable: str, value: str, needle: str
) -> None:
    """A malformed or unsupported proxy value: exit 2 within a second, one line naming it, no secret."""
    env = {
        "NODELOGS_ENDPOINT": "https://keysvc.example",
        "NODELOGS_CLUSTER": "c1",
        "NODELOGS_NODE": "n1",
        "NODELOGS_REGION": "local",
        "NODELOGS_KEY_FILE": str(tmp_path / "key"),
        "NODELOGS_STATE_DIR": str(tmp_path / "state"),
        "NODELOGS_CONFIG": str(_empty_toml(tmp_path)),
        "PATH": "/usr/bin:/bin",
        variable: value,
    }
    started = time.monotonic()
    result = servers.run_cli(["nodelogs-agent", command], env=env, check=False, timeout=10)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert elapsed < 1.0, f"took {elapsed:.2f}s"  # interpreter start-up included; no retry loop
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"nodelogs-agent: configuration error: {variable}=")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    for text in (result.stdout, result.stderr):
        assert "Sup3r" not in text
        assert "Secret" not in text


@pytest.mark.parametrize("cloud", [True], indirect=True, ids=["https-bucket"])
@pytest.mark.parametrize("kind", ["https", "socks5h"])
def test_run_with_a_wrong_proxy_password_logs_the_refusal_never_the_password(
    tmp_path: Path, cloud: Cloud, request: pytest.FixtureRequest, pki: Pki, kind: str
) -> None:
    """A running agent whose proxy refuses its password logs why (retrying), and the password never."""
    if kind == "https":
        proxy = f"https://agent:Wr0ngPass@{pki.host}:{request.getfixturevalue('https_proxy').port}"
        why = "refused the CONNECT tunnel: 401 Unauthorized (credentials were refused)"  # tinyproxy's 401
    else:
        proxy = f"socks5h://agent:Wr0ngPass@127.0.0.1:{request.getfixturevalue('socks_auth').port}"
        why = "refused the SOCKS5 user name or password"
    keysvc_hostport = f"{cloud.host}:{cloud.keysvc.port}"
    env = {
        "NODELOGS_ENDPOINT": f"http://{keysvc_hostport}",
        "NODELOGS_BUCKET_URL": cloud.bucket_url,
        "no_proxy": keysvc_hostport,
        "HTTPS_PROXY": proxy,
        "NODELOGS_PROXY_CA_FILE": str(pki.proxy_ca),
        "NODELOGS_CA_FILE": str(pki.bucket_ca),
    }
    source = tmp_path / "boot.log"
    source.write_bytes(b"a line that cannot get through\n")
    node = stack.Node(tmp_path / "node", cloud.keysvc, f"wrong-pw-{kind}", (str(source),), extra_env=env)
    node.provision()
    node.start("chunk_seconds = 0.3\n")
    agent_log = node.root / "agent.log"
    try:
        servers.wait_until(
            lambda: why in _log(str(agent_log)), timeout=30, what="the refusal in the agent's log"
        )
    finally:
        node.terminate()
    text = _log(str(agent_log))
    assert "Wr0ngPass" not in text
    assert "agent:***@" in text
