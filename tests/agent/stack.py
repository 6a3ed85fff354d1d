"""Real processes for the agent's integration tests and benchmark: keysvc serve, keys, the agent.

Not collected by pytest (no ``test_`` prefix). Everything here starts real programs: ``keysvc keys
issue``/``revoke`` on a state directory, ``keysvc serve`` on a free port, and ``nodelogs-agent run``.
Objects are read back through fake-gcs-server's JSON API (:mod:`keysvc.devtools.emulator`).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent.chunking import source_id
from keysvc.devtools import emulator
from keysvc.gcs.url_signing import new_service_account_file
from keysvc.wire.objectnames import parse_suffix
from tests.servers import free_port, http_ok, wait_until

BIN = Path(sys.executable).parent
BUCKET = "nodelogs-test"
PREFIX = "nodelogs"
CLUSTER = "c1"


@dataclass
class Keysvc:
    """A ``keysvc serve`` process on its own state directory; ``signed_endpoint`` is where URLs point."""

    state: Path
    signed_endpoint: str
    ttl: int | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for keysvc commands on this state."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSVC_")}
        env.update(
            KEYSVC_STATE_DIR=str(self.state),
            KEYSVC_GCS_ENDPOINT=self.signed_endpoint,
            KEYSVC_CONFIG=str(self.state / "keysvc.toml"),
        )
        if self.ttl is not None:
            env["KEYSVC_KEY_TTL_SECONDS"] = str(self.ttl)
        return env

    def prepare(self) -> Keysvc:
        """Write the config and a throwaway service-account key."""
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "keysvc.toml").write_text(
            f'[regions.local]\nbucket = "{BUCKET}"\nprefix = "{PREFIX}"\nendpoint = "http://127.0.0.1:{self.port}"\n'
        )
        new_service_account_file(
            self.state / "service-account.json", email="test@nodelogs-local.iam.gserviceaccount.com"
        )
        return self

    def issue(self, node: str) -> tuple[str, str]:
        """Mint a key for ``node`` with the real CLI; return (key id, key)."""
        out = subprocess.run(
            [
                str(BIN / "keysvc"),
                "keys",
                "issue",
                "--cluster",
                CLUSTER,
                "--node",
                node,
                "--instance",
                "i-0123456789abcdef0",
                "--region",
                "local",
                "-o",
                "json",
            ],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        data = json.loads(out.stdout)
        return str(data["key_id"]), str(data["key"])

    def revoke(self, key_id: str) -> None:
        """Revoke with the real CLI on the same state (the server sees it at the next request)."""
        subprocess.run(
            [str(BIN / "keysvc"), "keys", "revoke", key_id, "--reason", "test"],
            env=self.env(),
            capture_output=True,
            check=True,
            timeout=30,
        )

    def start(self) -> Keysvc:
        """Start ``keysvc serve`` and wait until it answers."""
        self.process = subprocess.Popen(
            [str(BIN / "keysvc"), "serve", "--port", str(self.port)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.state / "serve.log").open("ab"),
        )
        wait_until(lambda: http_ok(f"{self.url}/healthz"), timeout=30, what="keysvc serve")
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Node:
    """One simulated node: its key file, state directory, log directory and agent process."""

    root: Path
    keysvc: Keysvc
    name: str
    sources: tuple[str, ...]
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    key_id: str = ""
    key: str = ""

    @property
    def key_file(self) -> Path:
        """Where the key lives (0600)."""
        return self.root / "key"

    def provision(self) -> Node:
        """Issue a key and write it to the key file, mode 0600."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "agent.toml").touch()
        self.key_id, self.key = self.keysvc.issue(self.name)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.key + "\n")
        return self

    def env(self) -> dict[str, str]:
        """The agent's environment, as the systemd EnvironmentFile would set it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NODELOGS_", "KEYSVC_"))}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
            env.pop(name, None)
        env.update(
            NODELOGS_ENDPOINT=self.keysvc.url,
            NODELOGS_CLUSTER=CLUSTER,
            NODELOGS_NODE=self.name,
            NODELOGS_REGION="local",
            NODELOGS_SOURCES=",".join(self.sources),
            NODELOGS_KEY_FILE=str(self.key_file),
            NODELOGS_STATE_DIR=str(self.root / "state"),
            NODELOGS_CONFIG=str(self.root / "agent.toml"),
        )
        env.update(self.extra_env)
        return env

    def start(self, toml: str = "") -> subprocess.Popen[bytes]:
        """Start ``nodelogs-agent run``; its stderr goes to agent.log."""
        (self.root / "agent.toml").write_text(toml)
        self.process = subprocess.Popen(
            [str(BIN / "nodelogs-agent"), "run"],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "agent.log").open("ab"),
        )
        return self.process

    def kill9(self) -> None:
        """``kill -9`` the agent."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM the agent and return its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def fetch_streams(gcs_url: str, node: str) -> dict[tuple[str, str], list[tuple[int, int, bytes]]]:
    """Read every object of a node from fake-gcs-server: (source, stream) -> sorted (start, end, bytes)."""
    prefix = f"{PREFIX}/{CLUSTER}/{node}/"
    streams: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
    for item in emulator.list_objects(gcs_url, BUCKET, prefix):
        if str(item["name"]).endswith(".json"):
            continue  # a generation or gap record: no log bytes
        name = parse_suffix(str(item["name"]).removeprefix(prefix))
        data = gzip.decompress(emulator.read_object(gcs_url, BUCKET, str(item["name"])))
        streams.setdefault((name.source, name.stream), []).append((name.start, name.end, data))
    for parts in streams.values():
        parts.sort()
    return streams


def exact_stream(parts: list[tuple[int, int, bytes]]) -> bytes:
    """Concatenate a stream's objects, failing on any gap, overlap or length mismatch."""
    position = 0
    out = []
    for start, end, data in parts:
        assert start == position, (
            f"{'gap' if start > position else 'overlap'}: expected {position}, got {start}"
        )
        assert len(data) == end - start, f"object {start}-{end} holds {len(data)} bytes"
        out.append(data)
        position = end
    return b"".join(out)


def read_source(gcs_url: str, node: str, path: str) -> dict[int, bytes]:
    """Every generation of one source, reconstructed exactly: generation number -> bytes."""
    wanted = source_id(path)
    return {
        int(stream[1:]): exact_stream(parts)
        for (source, stream), parts in fetch_streams(gcs_url, node).items()
        if source == wanted
    }


def logs_get(keysvc: Keysvc, node: str, output: Path) -> dict[str, dict[int, bytes]]:
    """Run the real ``keysvc logs get --output``; fail on gaps/overlaps; source -> generation -> bytes."""
    code, stderr, found = logs_get_result(keysvc, node, output)
    assert code == 0, f"keysvc logs get exited {code}: {stderr}"
    return found


def logs_get_result(keysvc: Keysvc, node: str, output: Path) -> tuple[int, str, dict[str, dict[int, bytes]]]:
    """Run the real ``keysvc logs get --output``: its exit code, stderr, and source -> generation -> bytes."""
    result = subprocess.run(
        [
            str(BIN / "keysvc"),
            "logs",
            "get",
            "--cluster",
            CLUSTER,
            "--node",
            node,
            "--region",
            "local",
            "--output",
            str(output),
        ],
        env=keysvc.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found: dict[str, dict[int, bytes]] = {}
    for path in sorted(output.glob("*/*.log")):
        found.setdefault(path.parent.name, {})[int(path.stem.removeprefix("g"))] = path.read_bytes()
    return result.returncode, result.stderr, found


def landed(gcs_url: str, node: str, path: Path, generation: int, expected: bytes) -> bool:
    """While the agent runs: True once the generation equals ``expected`` exactly.

    Chunks of one batch are PUT in parallel and may land out of order, so a gap seen mid-flight
    means "not yet"; the final check after the agent stopped (``logs_get``) is strict.
    """
    try:
        return read_source(gcs_url, node, str(path)).get(generation) == expected
    except AssertionError:
        return False


def anything_landed(gcs_url: str, node: str) -> bool:
    """True once the node has at least one object in the bucket."""
    return bool(emulator.list_objects(gcs_url, BUCKET, f"{PREFIX}/{CLUSTER}/{node}/"))
