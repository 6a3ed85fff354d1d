"""``nodelogs-agent check``'s report, with an in-memory transport and resolver (no network)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.errors import (
    ConnectError,
    KeyFileInsecure,
    KeyUnavailable,
    ProxyAuthFailed,
    ProxyError,
    ProxyRefused,
    ProxyUntrusted,
    TransportError,
)
from agent.preflight import run_check
from tests.agent.fakes import ByPrefix

KEY = "nlk1_THIS_IS_THE_SECRET_KEY_VALUE"


@dataclass(frozen=True)
class Config:
    """The fields of AgentConfig the check reads."""

    endpoint: str = "https://keysvc.internal"
    cluster: str = "prod"
    node: str = "ip-10-0-0-1"
    region: str = "eu"
    key_file: str = "/etc/nodelogs/key"
    bucket_url: str = "https://storage.googleapis.com"
    env: Mapping[str, str] = field(default_factory=dict)

    def proxy_environ(self) -> dict[str, str]:
        """The proxy variables."""
        return dict(self.env)


def fake(
    answers: dict[str, int | TransportError], *, tls: tuple[str, ...] = (), grant_body: bytes | None = None
) -> ByPrefix:
    """A transport answering by URL prefix; a grant's 200 carries a session-like answer."""
    return ByPrefix(answers=answers, tls=tls, grant_body=grant_body if grant_body is not None else _session())


def _session() -> bytes:
    return json.dumps(
        {"key_id": "k123", "server_time": 1000.0, "key_expires_at": 4000.0, "bucket": "logs-eu", "grants": []}
    ).encode()


def resolver(names: dict[str, list[str]] | None = None) -> object:
    """A resolver from a dict; a missing name fails like getaddrinfo does."""
    table = names or {}
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(f"{host}:{port}")
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def _check(
    config: Config, transport: ByPrefix, names: dict[str, list[str]], key: object = KEY
) -> tuple[int, str]:
    def read_key(path: Path) -> str:
        if isinstance(key, Exception):
            raise key
        return str(key)

    out = io.StringIO()
    code = run_check(config, transport, out, resolve=resolver(names), read_key=read_key)  # type: ignore[arg-type]
    return code, out.getvalue()


ALL_NAMES = {
    "keysvc.internal": ["10.0.0.5"],
    "storage.googleapis.com": ["142.250.1.1"],
    "proxy": ["10.9.9.9"],
}


def test_all_reachable_direct_exits_zero_and_never_prints_the_key() -> None:
    """Both endpoints answer directly: exit 0, routes explained, the key sent but not printed."""
    transport = fake({"https://keysvc.internal/": 200, "https://storage.googleapis.com/": 400})
    code, out = _check(Config(), transport, ALL_NAMES)
    assert code == 0
    assert KEY not in out
    assert "direct (HTTPS_PROXY is not set)" in out
    assert "key k123 accepted, 3000 s left by keysvc's clock, bucket logs-eu" in out
    assert out.count("REACHABLE") == 2
    assert "all endpoints reachable" in out
    method, url, headers, body = transport.sent[0]
    assert (method, url) == ("POST", "https://keysvc.internal/v1/ingest/grants")
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(body or b"") == {"objects": []}  # no claims: keysvc uses the key's record
    assert transport.sent[1][:2] == ("GET", "https://storage.googleapis.com/")


def test_a_node_setting_that_disagrees_with_the_key_fails_the_check() -> None:
    """keysvc says the key is for another node: the keysvc check fails and names NODELOGS_NODE."""
    session = json.loads(_session()) | {"cluster": "prod", "node": "ip-10-0-0-2", "region": "eu"}
    transport = fake(
        {"https://keysvc.internal/": 200, "https://storage.googleapis.com/": 400},
        grant_body=json.dumps(session).encode(),
    )
    code, out = _check(Config(), transport, ALL_NAMES)
    assert code == 1
    assert "NODELOGS_NODE is 'ip-10-0-0-1' but the key is for 'ip-10-0-0-2': fix or unset it" in out
    assert "for node ip-10-0-0-2 of cluster prod" in out


def test_routes_name_the_proxy_and_the_no_proxy_entry() -> None:
    """keysvc goes direct because of a NO_PROXY entry, the bucket via the proxy, whose password is hidden."""
    env = {"HTTPS_PROXY": "http://agent:hunter2@proxy:3128", "no_proxy": ".internal"}
    transport = fake({"https://keysvc.internal/": 200, "https://storage.googleapis.com/": 400})
    code, out = _check(Config(env=env), transport, ALL_NAMES)
    assert code == 0
    assert "direct (no_proxy entry '.internal' matched keysvc.internal:443)" in out
    assert "via HTTP proxy http://agent:***@proxy:3128 (HTTPS_PROXY applies to https:// URLs" in out
    assert "proxy proxy -> 10.9.9.9" in out
    assert "hunter2" not in out


def test_unreachable_bucket_exits_nonzero_with_a_fix() -> None:
    """A refused direct connection to the bucket makes the check fail and suggests a proxy."""
    transport = fake(
        {
            "https://keysvc.internal/": 200,
            "https://storage.googleapis.com/": ConnectError(
                "storage.googleapis.com:443 refused the connection"
            ),
        }
    )
    code, out = _check(Config(), transport, ALL_NAMES)
    assert code == 1
    assert "UNREACHABLE" in out
    assert "set HTTPS_PROXY/HTTP_PROXY if this network needs a proxy" in out
    assert "FAILED: bucket" in out


def test_unresolvable_host_is_reported_without_connecting() -> None:
    """A name that does not resolve fails the check before any request is sent to it."""
    transport = fake({"https://storage.googleapis.com/": 400})
    code, out = _check(Config(), transport, {"storage.googleapis.com": ["142.250.1.1"]})
    assert code == 1
    assert "host keysvc.internal: FAILED (Name or service not known)" in out
    assert "check this node's DNS" in out
    assert [url for _, url, _, _ in transport.sent] == ["https://storage.googleapis.com/"]


def test_proxy_refusing_the_tunnel_suggests_connect_rules_and_no_proxy() -> None:
    """A ProxyError says to check the proxy's CONNECT rules and credentials, or NO_PROXY."""
    env = {"HTTPS_PROXY": "http://proxy:3128"}
    transport = fake(
        {
            "https://keysvc.internal/": ProxyError("proxy http://proxy:3128 refused the CONNECT tunnel: 403"),
            "https://storage.googleapis.com/": 400,
        }
    )
    code, out = _check(Config(env=env), transport, ALL_NAMES)
    assert code == 1
    assert "refused the tunnel" in out
    assert "add the host to NO_PROXY" in out


def test_http_proxy_wanting_credentials_is_unreachable() -> None:
    """Through an http:// proxy a 407 answer means the proxy, not the endpoint, answered."""
    config = Config(endpoint="http://keysvc.example:8080", env={"HTTP_PROXY": "proxy:3128"})
    transport = fake({"http://keysvc.example:8080/": 407, "https://storage.googleapis.com/": 400})
    code, out = _check(config, transport, {**ALL_NAMES, "keysvc.example": ["10.1.1.1"]})
    assert code == 1
    assert "HTTP 407: the proxy refused the credentials, or wants some" in out
    assert "percent-encoded" in out
    assert "keysvc: http://keysvc.example:8080" in out


def test_refused_key_fails_the_check() -> None:
    """keysvc answering 401 to a key makes the check fail with what to do."""
    transport = fake({"https://keysvc.internal/": 401, "https://storage.googleapis.com/": 400})
    code, out = _check(Config(), transport, ALL_NAMES)
    assert code == 1
    assert "keysvc refused the key" in out
    assert "needs a new key" in out


def test_absent_key_still_checks_the_route() -> None:
    """Without a key file the check probes keysvc without Authorization and passes on a 401."""
    transport = fake({"https://keysvc.internal/": 401, "https://storage.googleapis.com/": 400})
    code, out = _check(
        Config(), transport, ALL_NAMES, key=KeyUnavailable("key file /etc/nodelogs/key is absent")
    )
    assert code == 0
    assert "probing keysvc without a key" in out
    assert "Authorization" not in transport.sent[0][2]


def test_insecure_key_file_fails_the_check() -> None:
    """A key file readable by others fails the check with the key file's own message."""
    transport = fake({"https://keysvc.internal/": 401, "https://storage.googleapis.com/": 400})
    problem = KeyFileInsecure("key file /etc/nodelogs/key has mode 0644; run `chmod 600 /etc/nodelogs/key`")
    code, out = _check(Config(), transport, ALL_NAMES, key=problem)
    assert code == 1
    assert "chmod 600" in out


@pytest.mark.parametrize(
    ("status", "needle"), [(404, "base URL"), (400, "NODELOGS_CLUSTER"), (503, "failing")]
)
def test_keysvc_error_answers_fail_with_a_hint(status: int, needle: str) -> None:
    """404, 400 and 5xx from keysvc are reachable but fail the check, each with its hint."""
    transport = fake({"https://keysvc.internal/": status, "https://storage.googleapis.com/": 400})
    code, out = _check(Config(), transport, ALL_NAMES)
    assert code == 1
    assert needle in out
    assert "REACHABLE but NOT OK" in out


@pytest.mark.parametrize(
    ("env", "problem", "fix"),
    [
        (
            {"HTTPS_PROXY": "https://proxy:3128"},
            ProxyUntrusted("TLS to proxy https://proxy:3128 failed: its certificate is not trusted"),
            "set NODELOGS_PROXY_CA_FILE to the CA bundle that signed it",
        ),
        (
            {"HTTPS_PROXY": "http://agent:hunter2@proxy:3128"},
            ProxyAuthFailed("proxy http://agent:***@proxy:3128 refused the CONNECT tunnel: 407"),
            "put the proxy's user and password in the proxy URL, percent-encoded",
        ),
        (
            {"HTTPS_PROXY": "socks5://agent:hunter2@proxy:1080"},
            ProxyAuthFailed("proxy socks5://agent:***@proxy:1080 refused the SOCKS5 user name or password"),
            "put the proxy's user and password in the proxy URL, percent-encoded",
        ),
        (
            {"HTTPS_PROXY": "socks5h://proxy:1080"},
            ProxyRefused("proxy socks5h://proxy:1080 refused to connect: connection not allowed by ruleset"),
            "the SOCKS5 proxy socks5h://proxy:1080 refused to connect to this host",
        ),
        (
            {"HTTPS_PROXY": "https://proxy:3128"},
            ProxyRefused("proxy https://proxy:3128 refused the CONNECT tunnel to keysvc.internal:443: 403"),
            "allows CONNECT to this host and port",
        ),
    ],
)
def test_each_proxy_failure_gets_its_one_fix(env: dict[str, str], problem: Exception, fix: str) -> None:
    """An untrusted proxy certificate, a 407, a SOCKS auth failure and a refusal each get their own fix."""
    transport = fake({"https://keysvc.internal/": problem, "https://storage.googleapis.com/": 400})
    code, out = _check(Config(env=env), transport, ALL_NAMES)
    assert code == 1
    keysvc_part = out.split("bucket:", 1)[0]
    assert fix in keysvc_part
    assert keysvc_part.count("fix:") == 1
    assert "hunter2" not in out


def test_socks5h_route_says_the_proxy_resolves_the_name() -> None:
    """Through socks5h:// the check names the SOCKS5 proxy and says the proxy resolves the target."""
    env = {"HTTPS_PROXY": "socks5h://proxy:1080"}
    transport = fake({"https://keysvc.internal/": 200, "https://storage.googleapis.com/": 400})
    code, out = _check(Config(env=env), transport, ALL_NAMES)
    assert code == 0
    assert "via SOCKS5 proxy socks5h://proxy:1080 (HTTPS_PROXY applies" in out
    assert "keysvc.internal is resolved by the SOCKS5 proxy (socks5h)" in out
    assert "proxy proxy -> 10.9.9.9" in out


def test_tls_lines_of_the_answer_are_printed() -> None:
    """The TLS sessions the transport verified (to the proxy, to the target) appear in the report."""
    env = {"HTTPS_PROXY": "https://proxy:3128"}
    tls = (
        "proxy proxy:3128: TLSv1.3, certificate verified",
        "target keysvc.internal:443: TLSv1.3, certificate verified",
    )
    transport = fake({"https://keysvc.internal/": 200, "https://storage.googleapis.com/": 400}, tls=tls)
    code, out = _check(Config(env=env), transport, ALL_NAMES)
    assert code == 0
    assert "via HTTPS (TLS to the proxy) proxy https://proxy:3128" in out
    assert "  tls:     proxy proxy:3128: TLSv1.3, certificate verified\n" in out
    assert "  tls:     target keysvc.internal:443: TLSv1.3, certificate verified\n" in out
