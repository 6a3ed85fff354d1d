"""``keysvc demo``: the whole nodelogs flow on one machine, with real processes.

1. start fake-gcs-server as the local bucket and create the region's bucket;
2. write a fresh state directory: config, a freshly generated service-account key, credentials
   (``keysvc serve`` generates the audit signing key itself on first start);
3. start ``keysvc serve`` on SQLite;
4. play the provisioner: AddNode over HTTP;
5. run the real ``nodelogs-agent`` on a sample boot log (or, without the agent installed, do the
   grant and the PUT itself), until the whole log is in the bucket;
6. report the node terminated, which revokes the key and stops the agent;
7. print where the objects landed and the node's audit timeline, then stop everything.

:func:`write_local_setup` and :func:`start_serve` are shared with the integration tests.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, ClassVar, TextIO

from keysvc.devtools import emulator
from keysvc.devtools.errors import DemoError
from keysvc.files.credentials import create_credential
from keysvc.files.private_files import write_private
from keysvc.gcs.url_signing import new_service_account_file
from keysvc.wire.objectnames import chunk_suffix, stream_name

SERVICE_ACCOUNT = "keysvc-demo@nodelogs-local.iam.gserviceaccount.com"
SAMPLE_LOG = [
    "Cloud-init v. 22.4 running 'init-local' at Sat, 28 Nov 2026 08:00:01 +0000. Up 4.12 seconds.",
    "Cloud-init v. 22.4 running 'init' at Sat, 28 Nov 2026 08:00:03 +0000. Up 6.02 seconds.",
    "ci-info: ++++++++++++++++++++++++Net device info++++++++++++++++++++++++",
    "[bootstrap] kubelet: joining cluster demo via 10.0.0.1:6443",
    "[bootstrap] kubelet: error: x509: certificate signed by unknown authority",
    "Cloud-init v. 22.4 finished at Sat, 28 Nov 2026 08:00:31 +0000. Up 34.50 seconds",
]


@dataclass(frozen=True, slots=True)
class LocalSetup:
    """A state directory ready for ``keysvc serve``, with the tokens created for it."""

    state_dir: Path
    config_file: Path
    port: int
    provisioner_token: str
    admin_token: str

    @property
    def url(self) -> str:
        """Where the service listens."""
        return f"http://127.0.0.1:{self.port}"


def _q(value: object) -> str:
    return json.dumps(str(value))


def write_local_setup(
    state_dir: Path,
    *,
    port: int,
    gcs_endpoint: str,
    regions: Mapping[str, str],
    now: float,
    key_ttl_seconds: int = 3600,
    url_ttl_seconds: int = 300,
    sweep_interval_seconds: float = 60.0,
    max_chunk_bytes: int = 8 * 1024 * 1024,
) -> LocalSetup:
    """Write config, a fresh service-account key and two credentials; ``regions`` maps region to bucket."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    service_account = state_dir / "service-account.json"
    new_service_account_file(service_account, email=SERVICE_ACCOUNT)
    credentials = state_dir / "credentials.toml"
    lines = [
        "[state]",
        f"database = {_q('sqlite:///' + str(state_dir / 'keysvc.db'))}",
        f"audit_signing_key = {_q(state_dir / 'audit-signing-key.pem')}",
        f"key_ttl_seconds = {key_ttl_seconds}",
        f"sweep_interval_seconds = {float(sweep_interval_seconds)}",
        "",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"credentials_file = {_q(credentials)}",
        f"url_ttl_seconds = {url_ttl_seconds}",
        f"max_chunk_bytes = {max_chunk_bytes}",
        "",
        "[gcs]",
        f"service_account_file = {_q(service_account)}",
        f"endpoint = {_q(gcs_endpoint)}",
    ]
    for region, bucket in regions.items():
        lines += ["", f"[regions.{region}]", f"bucket = {_q(bucket)}", 'prefix = "nodelogs"']
        lines.append(f"endpoint = {_q(f'http://127.0.0.1:{port}')}")
    config_file = state_dir / "keysvc.toml"
    write_private(config_file, ("\n".join(lines) + "\n").encode("utf-8"))
    _, provisioner = create_credential(
        credentials, name="provisioner", scopes=["nodes:add", "nodes:terminate"], now=now
    )
    _, admin = create_credential(credentials, name="operator", scopes=["admin:read", "admin:revoke"], now=now)
    return LocalSetup(state_dir, config_file, port, provisioner, admin)


def console_script(name: str) -> list[str]:
    """Return the argv prefix that runs one of this project's console scripts."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = {"keysvc": "keysvc.cli", "nodelogs-agent": "agent.cli"}[name]
    return [sys.executable, "-m", module]


def start_serve(
    setup: LocalSetup, log: IO[Any] | int, args: Sequence[str] = (), timeout: float = 20.0
) -> subprocess.Popen[bytes]:
    """Start ``keysvc serve`` for ``setup`` and wait until ``/readyz`` says ready."""
    argv = [
        *console_script("keysvc"),
        "--config",
        str(setup.config_file),
        "--log-level",
        "info",
        "serve",
        *args,
    ]
    process = subprocess.Popen(argv, stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"keysvc serve exited with {process.returncode} at start")
        try:
            if request("GET", f"{setup.url}/readyz")[0] == 200:
                return process
        except OSError:
            pass
        time.sleep(0.05)
    stop(process)
    raise DemoError(f"keysvc serve was not ready within {timeout}s")


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """Terminate a process (SIGTERM, then SIGKILL) and return its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def request(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """Send a JSON request and return ``(status, decoded JSON body or None)``."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback demo
    if data is not None:
        req.add_header("content-type", "application/json")
    if token is not None:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - loopback demo
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, None


def _put_without_agent(
    setup: LocalSetup, added: Mapping[str, Any], node: Mapping[str, str], log: bytes
) -> None:
    """Without the agent: ask for one URL and PUT the gzipped log through it, as the agent would."""
    name = chunk_suffix("var-log-cloud-init-output.log", stream_name(1), 0, len(log))
    body = {**node, "objects": [{"name": name}]}
    status, grant = request("POST", f"{setup.url}/v1/ingest/grants", body, token=added["key"])
    if status != 200:
        raise DemoError(f"upload grant answered {status}: {grant}")
    item = grant["grants"][0]
    put = urllib.request.Request(item["url"], data=gzip.compress(log), method="PUT")  # noqa: S310 - loopback
    for header, value in item["headers"].items():
        put.add_header(header, value)
    with urllib.request.urlopen(put, timeout=10):  # noqa: S310 - loopback demo
        pass


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def _stamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%H:%M:%S")


class _Demo:
    """The demo's steps, sharing the processes they start so that :meth:`close` stops them all."""

    node: ClassVar[dict[str, str]] = {
        "cluster": "demo",
        "node": "ip-10-0-0-12.ec2.internal",
        "region": "local",
    }
    instance = "i-0123456789abcdef0"
    bucket = "nodelogs-local"

    def __init__(self, out: TextIO, workdir: Path) -> None:
        self.out = out
        self.workdir = workdir
        self.started: list[subprocess.Popen[Any]] = []
        self.logs: list[BinaryIO] = []
        self.gcs: emulator.FakeGcs | None = None
        self.prefix = f"nodelogs/{self.node['cluster']}/{self.node['node']}/"

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _log(self, name: str) -> BinaryIO:
        handle = (self.workdir / name).open("wb")
        self.logs.append(handle)
        return handle

    def start_stack(self) -> tuple[str, LocalSetup]:
        self.gcs = gcs = emulator.start()
        emulator.create_buckets(gcs.url, [self.bucket])
        self.say(f"1. fake-gcs-server is the bucket at {gcs.url}; bucket {self.bucket} created")
        setup = write_local_setup(
            self.workdir / "state",
            port=emulator.free_port(),
            gcs_endpoint=gcs.url,
            regions={"local": self.bucket},
            now=time.time(),
        )
        self.started.append(start_serve(setup, self._log("keysvc.log")))
        self.say(f"2. keysvc serve is ready at {setup.url}: SQLite, fresh service-account and audit keys")
        self.say(f"   in {setup.state_dir}")
        return gcs.url, setup

    def add_node(self, setup: LocalSetup) -> dict[str, Any]:
        started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            **self.node,
            "instance": self.instance,
            "operation_id": "addnode-demo-1",
            "started_at": started_at,
        }
        status, added = request("POST", f"{setup.url}/v1/nodes", body, token=setup.provisioner_token)
        if status != 201:
            raise DemoError(f"AddNode answered {status}: {added}")
        self.say(f"3. provisioner AddNode -> key {added['key_id']}, expires {added['expires_at']};")
        self.say(
            f"   cloud-config user data ({len(added['user_data'])} B) points the agent at {added['endpoint']}"
        )
        return dict(added)

    def upload(self, setup: LocalSetup, added: Mapping[str, Any], use_agent: bool) -> tuple[bytes, Any]:
        boot_log = self.workdir / "node" / "cloud-init-output.log"
        boot_log.parent.mkdir()
        boot_log.write_text("\n".join(SAMPLE_LOG) + "\n", encoding="utf-8")
        agent: subprocess.Popen[Any] | None = None
        if use_agent and (Path(sys.executable).parent / "nodelogs-agent").exists():
            key_file = self.workdir / "node" / "key"
            write_private(key_file, (added["key"] + "\n").encode("ascii"))
            argv = [
                *console_script("nodelogs-agent"), "run", "--endpoint", added["endpoint"],
                "--cluster", self.node["cluster"], "--node", self.node["node"],
                "--region", self.node["region"],
                "--source", str(boot_log), "--key-file", str(key_file),
                "--state-dir", str(self.workdir / "node" / "agent-state"), "--chunk-seconds", "0.5",
            ]  # fmt: skip
            log = self._log("agent.log")
            agent = subprocess.Popen(argv, stdout=log, stderr=log)
            self.started.append(agent)
            self.say(
                f"4. nodelogs-agent (pid {agent.pid}) tails {boot_log.name}; uploads via grant + signed PUT"
            )
        else:
            _put_without_agent(setup, added, self.node, boot_log.read_bytes())
            self.say("4. (no agent installed) uploaded the boot log through one grant and one signed PUT")
        return boot_log.read_bytes(), agent

    def stored(self, gcs_url: str) -> list[tuple[str, int, bytes]]:
        found = []
        for item in emulator.list_objects(gcs_url, self.bucket, self.prefix):
            if str(item["name"]).endswith(".json"):
                continue  # a generation or gap record (keysvc.wire.objectnames), not log bytes
            data = gzip.decompress(emulator.read_object(gcs_url, self.bucket, item["name"]))
            found.append((str(item["name"]), int(item["size"]), data))
        return found

    def terminate(self, setup: LocalSetup, agent: subprocess.Popen[Any] | None) -> None:
        body = {"instance": self.instance}
        status, answer = request(
            "POST", f"{setup.url}/v1/nodes/terminated", body, token=setup.provisioner_token
        )
        self.say(
            f"5. provisioner: node terminated -> revoked {answer['revoked'] if status == 200 else status}"
        )
        if agent is not None:
            try:
                code = agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                code = stop(agent)
            self.say(f"   the agent saw its key refused and exited with status {code} (11 = refused/revoked)")

    def report(self, gcs_url: str, setup: LocalSetup, original: bytes) -> bool:
        self.say(f"\nObjects in gs://{self.bucket}/{self.prefix}")
        rebuilt = b""
        for name, size, data in self.stored(gcs_url):
            rebuilt += data
            self.say(f"  {name[len(self.prefix) :]}  ({size} B gzip, {len(data)} B of log)")
        same = rebuilt == original
        self.say(f"  reassembled, they equal the node's log byte for byte: {same}")
        query = f"cluster={self.node['cluster']}&node={self.node['node']}"
        status, audit = request("GET", f"{setup.url}/v1/admin/audit?{query}", token=setup.admin_token)
        self.say(f"\nAudit timeline of {self.node['node']} (hash-chained, Ed25519-signed):")
        for rec in audit["records"] if status == 200 else []:
            who = rec["actor"] or rec["source"] or ""
            why = f" reason={rec['reason']}" if rec["reason"] else ""
            self.say(
                f"  #{rec['seq']:<3} {_stamp(rec['at_unix'])}  {rec['event']:<9} "
                f"key={rec['key_id']}  {who}{why}"
            )
        status, verified = request("GET", f"{setup.url}/v1/admin/audit/verify", token=setup.admin_token)
        intact = status == 200 and bool(verified["ok"])
        self.say(f"  audit chain verifies: {intact}")
        return same and intact

    def close(self) -> None:
        for process in reversed(self.started):
            stop(process)
        if self.gcs is not None:
            self.gcs.stop()
        for handle in self.logs:
            handle.close()


def run(out: TextIO, *, keep: bool = False, use_agent: bool = True) -> int:
    """Run the demo, printing to ``out``; returns 0 when every step worked."""
    workdir = Path(tempfile.mkdtemp(prefix="nodelogs-demo-"))
    demo = _Demo(out, workdir)
    ok = False
    try:
        gcs_url, setup = demo.start_stack()
        added = demo.add_node(setup)
        original, agent = demo.upload(setup, added, use_agent)
        expected = len(original)
        _wait(
            lambda: sum(len(d) for _, _, d in demo.stored(gcs_url)) >= expected, 30, "the log in the bucket"
        )
        demo.terminate(setup, agent)
        ok = demo.report(gcs_url, setup, original)
    finally:
        demo.close()
        if keep:
            demo.say(f"\nkept {workdir} (logs, state)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    demo.say("\nStopped keysvc, the agent and fake-gcs-server." if ok else "\nDEMO FAILED")
    return 0 if ok else 1
