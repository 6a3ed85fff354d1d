"""kill -9 the real agent at random moments, many times, while logs grow: no gap, no overlap, exact bytes."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.chunking import source_id
from keysvc.devtools import emulator
from tests.agent.stack import BUCKET, Keysvc, Node, landed, logs_get
from tests.faultproxy import FaultProxy
from tests.servers import Server, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("agent-crash")]

KILLS = 30


@pytest.fixture
def keysvc(tmp_path: Path, fake_gcs: Server) -> Iterator[Keysvc]:
    """A real keysvc serve; signed URLs point at a front that makes every PUT slow (stored, then 80 ms)."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    front = FaultProxy(fake_gcs.url, plan=lambda method, _path: "slow:0.08" if method == "PUT" else None)
    service = Keysvc(tmp_path / "keysvc", front.url).prepare().start()
    yield service
    service.stop()
    front.close()


def writer(paths: list[Path], stop: threading.Event, seed: int) -> None:
    """Append lines of varied size and content, sometimes in two pieces (a partial line first)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible workload, not crypto
    handles = [path.open("ab", buffering=0) for path in paths]
    try:
        n = 0
        while not stop.is_set():
            handle = rng.choice(handles)
            kind = rng.random()
            if kind < 0.1:
                line = os.urandom(rng.randint(1, 3000)) + b"\n"
            elif kind < 0.11:
                line = b"L" * rng.randint(20_000, 100_000) + b"\n"
            else:
                line = b"%06d systemd[1]: Started unit %d.\n" % (n, rng.randint(0, 10**6))
            if rng.random() < 0.2:
                cut = rng.randint(0, len(line))
                handle.write(line[:cut])
                time.sleep(0.01)
                handle.write(line[cut:])
            else:
                handle.write(line)
            n += 1
            time.sleep(rng.random() * 0.004)
    finally:
        for handle in handles:
            handle.close()


def test_random_kill9s_lose_and_duplicate_nothing(tmp_path: Path, fake_gcs: Server, keysvc: Keysvc) -> None:
    """30 kill -9s at random points within about a minute; every file is reproduced exactly once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    paths = [logs / "a.log", logs / "b.log"]
    for path in paths:
        path.touch()
    node = Node(tmp_path / "node", keysvc, "crash-node", tuple(str(p) for p in paths)).provision()
    toml = "chunk_bytes = 65536\nchunk_seconds = 0.1\npartial_line_seconds = 0.2\nchunks_per_batch = 4\n"
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(paths, stop, 7), daemon=True)
    thread.start()
    rng = random.Random(11)  # noqa: S311 - reproducible kill times, not crypto
    try:
        for _ in range(KILLS):
            node.start(toml)
            time.sleep(rng.uniform(0.25, 1.6))
            node.kill9()
    finally:
        stop.set()
        thread.join()
    node.start(toml)
    expected = {path: path.read_bytes() for path in paths}
    for path, content in expected.items():
        wait_until(
            lambda p=path, c=content: landed(fake_gcs.url, node.name, p, 1, c),  # type: ignore[misc]
            timeout=60,
            what=f"{path.name} fully shipped",
        )
    assert node.terminate() == 0
    found = logs_get(keysvc, node.name, tmp_path / "out")
    for path, content in expected.items():
        assert found[source_id(str(path))] == {1: content}
    assert sum(len(c) for c in expected.values()) > 1_000_000
    # Most kills landed while chunks were staged but not acknowledged: the next run re-sent them.
    assert (node.root / "agent.log").read_text().count('"resending_intent"') >= 5
