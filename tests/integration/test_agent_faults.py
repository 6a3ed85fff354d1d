"""Faults before the bucket and keysvc (503, 429, resets, timeouts, 412, 403, expired URLs, keysvc down)."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from agent.chunking import source_id
from keysvc.devtools import emulator
from tests.agent.stack import BUCKET, Keysvc, Node, landed, logs_get
from tests.faultproxy import FaultProxy, random_plan
from tests.servers import Server, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("agent-faults")]

BUCKET_FAULTS = (
    "status:503",
    "status:500",
    "status:429",
    "reset",
    "timeout",
    "after:412",
    "after:reset",
    "status:403",
    "expired",
)
KEYSVC_FAULTS = ("status:503", "status:502", "status:429", "reset", "timeout")


def test_faults_and_keysvc_outage_lose_and_duplicate_nothing(tmp_path: Path, fake_gcs: Server) -> None:
    """With a third of requests failing in every way and keysvc down for 3 s, each byte lands exactly once."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    bucket_front = FaultProxy(fake_gcs.url, random_plan(1, 0.35, BUCKET_FAULTS, ("PUT",)), hold_seconds=1.0)
    keysvc = Keysvc(tmp_path / "keysvc", bucket_front.url).prepare().start()
    keysvc_front = FaultProxy(keysvc.url, random_plan(2, 0.3, KEYSVC_FAULTS, ("POST",)), hold_seconds=1.0)
    logs = tmp_path / "logs"
    logs.mkdir()
    paths = [logs / "cloud-init-output.log", logs / "kubelet.log"]
    for path in paths:
        path.write_bytes(b"")
    node = Node(
        tmp_path / "node",
        keysvc,
        "faulty-node",
        tuple(str(p) for p in paths),
        extra_env={"NODELOGS_ENDPOINT": keysvc_front.url},
    ).provision()
    node.start("chunk_bytes = 16384\nchunk_seconds = 0.2\nrequest_timeout = 0.7\nretry_max_wait = 0.5\n")
    stop = threading.Event()

    def write() -> None:
        rng = random.Random(3)  # noqa: S311 - reproducible workload, not crypto
        n = 0
        while not stop.is_set():
            with rng.choice(paths).open("ab") as handle:
                handle.write(b"%d " % n + os.urandom(rng.randint(0, 600)).hex().encode() + b"\n")
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        time.sleep(3)
        keysvc.stop()  # keysvc down for a while: the same port comes back with the same state
        time.sleep(3)
        keysvc.start()
        time.sleep(3)
    finally:
        stop.set()
        writer.join()
    expected = {path: path.read_bytes() for path in paths}
    for path, content in expected.items():
        wait_until(
            lambda p=path, c=content: landed(fake_gcs.url, node.name, p, 1, c),  # type: ignore[misc]
            timeout=90,
            what=f"{path.name} shipped through the faults",
        )
    assert node.terminate() == 0
    found = logs_get(keysvc, node.name, tmp_path / "out")
    for path, content in expected.items():
        assert found[source_id(str(path))] == {1: content}
    for kind in BUCKET_FAULTS:
        assert bucket_front.counts[kind] > 0, f"bucket fault {kind} never fired"
    for kind in KEYSVC_FAULTS:
        assert keysvc_front.counts[kind] > 0, f"keysvc fault {kind} never fired"
    keysvc.stop()
    keysvc_front.close()
    bucket_front.close()
