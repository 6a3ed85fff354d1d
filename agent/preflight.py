"""``nodelogs-agent check``: can this node reach keysvc and the bucket, and by which route?

For each endpoint it prints the route (direct or through which proxy, and why: the variable that
applied or the NO_PROXY entry that matched), resolves the host it will connect to (the proxy's,
when there is one), sends one real request through :class:`~agent.transport.Transport`, and says
whether the endpoint is reachable and, if not, what to fix.

- keysvc gets the session probe the agent itself sends first (``POST /v1/ingest/grants`` with no
  objects): it proves the route, and with a key it proves the key is accepted and shows its
  remaining life by keysvc's clock.
- the bucket gets ``GET /`` on ``bucket_url`` (config ``NODELOGS_BUCKET_URL``, default
  ``https://storage.googleapis.com``); any HTTP answer from the storage service proves the route,
  since the signed URLs the agent uses later go to the same host.

The exit status is 0 when both endpoints are reachable and the key (if present) is accepted, else 1.
The key is sent, never printed: nothing here prints headers or bodies.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO
from urllib.parse import urlsplit

from agent import keyfile, session
from agent.errors import (
    AgentError,
    ConnectError,
    KeyUnavailable,
    ProxyAuthFailed,
    ProxyError,
    ProxyUntrusted,
    RequestTimeout,
    TransportError,
)
from agent.noproxy import split_target
from agent.proxyconfig import ProxyConfig, ProxyDecision
from agent.transport import Requester

GRANTS_PATH = "/v1/ingest/grants"

Resolver = Callable[[str, int], list[str]]


class CheckConfig(Protocol):
    """What the check needs from :class:`agent.config.AgentConfig`."""

    @property
    def endpoint(self) -> str: ...
    @property
    def cluster(self) -> str | None: ...
    @property
    def node(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def key_file(self) -> str: ...
    @property
    def bucket_url(self) -> str: ...
    def proxy_environ(self) -> dict[str, str]: ...


KeyReader = Callable[[Path], str]


@dataclass
class Report:
    """What the check found for one endpoint."""

    name: str
    url: str
    route: ProxyDecision
    lines: list[tuple[str, str]] = field(default_factory=list)
    reachable: bool = False
    ok: bool = False
    fixes: list[str] = field(default_factory=list)


def resolve_host(host: str, port: int) -> list[str]:
    """Resolve ``host`` to its addresses with the system resolver (raises ``OSError``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def read_credential(path: Path, *, state_dir: Path) -> str:
    """Read what the agent itself presents: its session once it exchanged the key, else the key.

    Probing with the raw key after the exchange would be refused and audited as a replay.
    """
    key = keyfile.read_key(path)
    return session.stored_session(state_dir, key.key_id) or key.secret


def read_key_secret(path: Path) -> str:
    """Read the key with the agent's own checks (mode 0600, well-formed)."""
    return keyfile.read_key(path).secret


@dataclass(frozen=True)
class _Net:
    """How the check reaches the network: the transport, the proxy rules, a resolver, a timeout."""

    transport: Requester
    proxies: ProxyConfig
    resolve: Resolver
    timeout: float


def run_check(
    config: CheckConfig,
    transport: Requester,
    out: TextIO,
    *,
    resolve: Resolver = resolve_host,
    read_key: KeyReader = read_key_secret,
    timeout: float = 10.0,
) -> int:
    """Check keysvc and the bucket, print a report per endpoint to ``out``, return the exit status."""
    net = _Net(transport, ProxyConfig.from_env(config.proxy_environ()), resolve, timeout)
    key, key_note, key_ok = _load_key(config, read_key)
    keysvc = _check_keysvc(config, net, key)
    keysvc.lines.insert(0, ("key", key_note))
    if not key_ok:
        keysvc.ok = False
        keysvc.fixes.append(f"fix the key file {config.key_file} (see the key line above)")
    bucket = _check_bucket(config.bucket_url, net)
    for report in (keysvc, bucket):
        _print(report, out)
    failed = [r.name for r in (keysvc, bucket) if not r.ok]
    out.write("\nall endpoints reachable\n" if not failed else f"\nFAILED: {', '.join(failed)}\n")
    return 1 if failed else 0


def _load_key(config: CheckConfig, read_key: KeyReader) -> tuple[str | None, str, bool]:
    try:
        return read_key(Path(config.key_file)), f"read from {config.key_file} (not shown)", True
    except KeyUnavailable as exc:
        return None, f"{exc}; probing keysvc without a key", True
    except AgentError as exc:
        return None, str(exc), False


def _check_keysvc(config: CheckConfig, net: _Net, key: str | None) -> Report:
    url = config.endpoint.rstrip("/") + GRANTS_PATH
    report = Report("keysvc", config.endpoint, net.proxies.decide(url))
    body = json.dumps({"objects": []}).encode()  # no claims: keysvc takes them from the key's record
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    status, answer = _probe(report, net, "POST", url, headers=headers, body=body)
    if status is None:
        return report
    report.reachable = True
    if status == 200:
        report.lines.append(("answer", f"HTTP 200: {_session_summary(answer)}"))
        report.fixes.extend(_scope_mismatches(config, answer))
        report.ok = not report.fixes
    elif status in (401, 403):
        report.ok = key is None
        if key is None:
            report.lines.append(("answer", f"HTTP {status}: keysvc answers (no key to test)"))
        else:
            report.lines.append(("answer", f"HTTP {status}: keysvc refused the key"))
            report.fixes.append(
                "the key is revoked, expired or unknown to this keysvc: the node needs a new key, "
                "or NODELOGS_ENDPOINT points at the wrong keysvc"
            )
    elif status == 400:
        report.lines.append(("answer", "HTTP 400: keysvc refused the request as malformed"))
        report.fixes.append("check NODELOGS_CLUSTER, NODELOGS_NODE and NODELOGS_REGION")
    elif status == 404:
        report.lines.append(("answer", f"HTTP 404: no {GRANTS_PATH} at this URL"))
        report.fixes.append(
            "NODELOGS_ENDPOINT should be keysvc's base URL, such as https://keysvc.example.com"
        )
    elif status == 429:
        report.ok = True
        report.lines.append(("answer", "HTTP 429: keysvc answers but asks to slow down"))
    else:
        _proxy_status(report, status, f"HTTP {status}: keysvc answered with an error")
    return report


def _check_bucket(bucket_url: str, net: _Net) -> Report:
    parts = urlsplit(bucket_url)
    url = f"{parts.scheme}://{parts.netloc}/"
    report = Report("bucket", bucket_url, net.proxies.decide(url))
    status, _ = _probe(report, net, "GET", url, headers={}, body=None)
    if status is None:
        return report
    report.reachable = True
    report.ok = True
    _proxy_status(report, status, f"HTTP {status}: the storage service answers")
    return report


def _proxy_status(report: Report, status: int, answer: str) -> None:
    """Record an answer; through a proxy, 407/502/504 mean the proxy, not the endpoint, answered."""
    proxied = report.route.proxy is not None
    if proxied and status == 407:
        report.reachable = report.ok = False
        report.lines.append(("answer", "HTTP 407: the proxy refused the credentials, or wants some"))
        report.fixes.append(_CREDENTIALS_FIX)
    elif proxied and status in (502, 504):
        report.reachable = report.ok = False
        report.lines.append(("answer", f"HTTP {status}: the proxy could not reach the endpoint"))
        report.fixes.append("the proxy cannot reach this host; check the proxy's own access, or bypass it")
    else:
        if status >= 500:
            report.ok = False
            report.fixes.append("the endpoint answers but is failing; check its service")
        report.lines.append(("answer", answer))


def _probe(
    report: Report, net: _Net, method: str, url: str, *, headers: dict[str, str], body: bytes | None
) -> tuple[int | None, bytes]:
    """Resolve the host to connect to and send the request; record failures with fixes."""
    route = report.route
    report.lines.append(("route", f"{_via(route)} ({route.reason})"))
    if route.proxy is not None:
        host, port = route.proxy.host, str(route.proxy.port)
        what = "proxy"
    else:
        host, port = split_target(urlsplit(url).scheme, urlsplit(url).netloc)
        what = "host"
    if route.proxy is not None and route.proxy.scheme == "socks5h":
        name = urlsplit(url).hostname
        report.lines.append(("resolve", f"{name} is resolved by the SOCKS5 proxy (socks5h)"))
    try:
        addresses = net.resolve(host, int(port or 0))
    except (OSError, ValueError) as exc:
        report.lines.append(("resolve", f"{what} {host}: FAILED ({_reason(exc)})"))
        report.fixes.append(_resolve_fix(report, host))
        return None, b""
    report.lines.append(("resolve", f"{what} {host} -> {', '.join(addresses) or 'no addresses'}"))
    try:
        answer = net.transport.request(method, url, headers=headers, body=body, timeout=net.timeout)
    except TransportError as exc:
        report.lines.append(("connect", f"FAILED: {exc}"))
        report.fixes.append(_connect_fix(report, exc))
        return None, b""
    report.lines.append(("connect", "OK"))
    for line in getattr(answer, "tls", ()):
        report.lines.append(("tls", line))
    return answer.status, answer.body


def _via(route: ProxyDecision) -> str:
    if route.proxy is None:
        return "direct"
    kinds = {"http": "HTTP", "https": "HTTPS (TLS to the proxy)", "socks5": "SOCKS5", "socks5h": "SOCKS5"}
    return f"via {kinds[route.proxy.scheme]} proxy {route.display}"


def _session_summary(body: bytes) -> str:
    try:
        data = json.loads(body)
        life = float(data["key_expires_at"]) - float(data["server_time"])
        where = f" for node {data['node']} of cluster {data['cluster']}" if "node" in data else ""
        return (
            f"key {data['key_id']} accepted{where}, {int(life)} s left by keysvc's clock, "
            f"bucket {data['bucket']}"
        )
    except (ValueError, KeyError, TypeError):
        return "keysvc answered 200 but the body is not a session answer; is this really keysvc?"


def _scope_mismatches(config: CheckConfig, body: bytes) -> list[str]:
    """Fixes for cluster/node/region settings that disagree with the key's record (``run`` exits 2)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    fixes = []
    for name in ("cluster", "node", "region"):
        setting, actual = getattr(config, name), data.get(name) if isinstance(data, dict) else None
        if setting is not None and actual is not None and setting != actual:
            fixes.append(
                f"NODELOGS_{name.upper()} is {setting!r} but the key is for {actual!r}: fix or unset it"
            )
    return fixes


def _resolve_fix(report: Report, host: str) -> str:
    if report.route.proxy is not None:
        return f"the proxy host {host} does not resolve: check the proxy URL and this node's DNS"
    hint = (
        "; if this network only reaches out through a proxy, set HTTPS_PROXY"
        if report.url.startswith("https")
        else "; if this network only reaches out through a proxy, set HTTP_PROXY"
    )
    return f"{host} does not resolve: check this node's DNS (/etc/resolv.conf){hint}"


def _connect_fix(report: Report, exc: TransportError) -> str:
    route = report.route
    if isinstance(exc, ProxyError):
        return _proxy_fix(route, exc)
    if "TLS" in str(exc):
        return (
            "the certificate is not trusted: if a TLS-inspecting proxy or a private CA is in the way, "
            "set NODELOGS_CA_FILE to its CA bundle"
        )
    if route.proxy is not None:
        return f"cannot get through the proxy {route.display}: check that it runs and the proxy URL's port"
    return _direct_fix(route, exc)


_CREDENTIALS_FIX = (
    "put the proxy's user and password in the proxy URL, percent-encoded "
    "(scheme://user:p%40ss@proxy:port for the password p@ss), and check them with the proxy's owner"
)


def _proxy_fix(route: ProxyDecision, exc: ProxyError) -> str:
    if isinstance(exc, ProxyUntrusted):
        return (
            f"the proxy {route.display} presents a certificate this node does not trust: set "
            "NODELOGS_PROXY_CA_FILE to the CA bundle that signed it (or fix the proxy's host name)"
        )
    if isinstance(exc, ProxyAuthFailed):
        return _CREDENTIALS_FIX
    if route.proxy is not None and route.proxy.is_socks:
        return (
            f"the SOCKS5 proxy {route.display} refused to connect to this host: check its rules, "
            "or add the host to NO_PROXY if it is reachable directly"
        )
    return (
        f"the proxy {route.display} refused the tunnel: check that it allows CONNECT to this host "
        "and port; or add the host to NO_PROXY if it is reachable directly"
    )


def _direct_fix(route: ProxyDecision, exc: TransportError) -> str:
    slow = "timed out" if isinstance(exc, RequestTimeout) else "failed"
    if " entry '" in route.reason:
        return f"the direct connection {slow} and a NO_PROXY entry sent it direct: remove it to use the proxy"
    if isinstance(exc, ConnectError | RequestTimeout):
        return (
            f"the direct connection {slow}: check firewalls and security groups, "
            "or set HTTPS_PROXY/HTTP_PROXY if this network needs a proxy"
        )
    return "the connection broke: retry, and check any middlebox between this node and the endpoint"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _print(report: Report, out: TextIO) -> None:
    out.write(f"{report.name}: {report.url}\n")
    for label, text in report.lines:
        out.write(f"  {label + ':':<9}{text}\n")
    verdict = "REACHABLE" if report.reachable else "UNREACHABLE"
    if report.reachable and not report.ok:
        verdict += " but NOT OK"
    out.write(f"  {'result:':<9}{verdict}\n")
    for fix in report.fixes:
        out.write(f"  {'fix:':<9}{fix}\n")
