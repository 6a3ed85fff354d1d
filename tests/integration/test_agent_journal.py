"""journal:kubelet.service end to end: real journal files, journalctl, keysvc serve, the agent, a bucket."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.chunking import source_id
from keysvc.devtools import emulator
from tests.agent.journal_files import Journal
from tests.agent.stack import BUCKET, CLUSTER, PREFIX, Keysvc, Node, anything_landed, logs_get, read_source
from tests.servers import Server, wait_until

pytestmark = pytest.mark.integration

UNIT = "kubelet.service"
SPEC = f"journal:{UNIT}"


def in_bucket(gcs_url: str, node: str) -> bytes | None:
    """The journal source's first generation as landed so far (None while a batch is still in flight)."""
    try:
        return read_source(gcs_url, node, SPEC).get(1, b"")
    except AssertionError:  # chunks of one batch land in parallel: a gap mid-flight means not yet
        return None


def objects(gcs_url: str, node: str) -> list[str]:
    """Names of the node's objects in the bucket."""
    return [
        str(item["name"]) for item in emulator.list_objects(gcs_url, BUCKET, f"{PREFIX}/{CLUSTER}/{node}/")
    ]


def kubelet_batch(first: int, count: int) -> list[bytes]:
    """``count`` kubelet-like messages numbered from ``first``."""
    template = b"I1128 08:00:00.%06d 4242 kubelet.go:%d] SyncLoop (PLEG): pod %d"
    return [template % (i, i, i) for i in range(first, first + count)]


def test_bucket_holds_what_journalctl_prints_across_a_kill9_between_batches(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """Batches before, during and after a kill -9: the bucket equals journalctl -u kubelet.service output."""
    journal = Journal(tmp_path / "journal")  # absent when the agent starts, like a journal not yet written
    node = Node(
        tmp_path / "node",
        keysvc,
        "journal-node",
        (SPEC,),
        extra_env={"NODELOGS_JOURNAL_DIRECTORY": str(journal.directory)},
    ).provision()
    toml = "chunk_bytes = 65536\nchunk_seconds = 0.3\npartial_line_seconds = 0.6\n"
    node.start(toml)
    time.sleep(1.5)  # at least one pull finds no journal yet

    # Batch 1, about 2 MB, interleaved with another unit, written while the agent runs; kill -9 mid-shipping.
    batch = [journal.from_pid1(UNIT, b"Started kubelet.service - kubelet: The Kubernetes Node Agent.")]
    for start in range(0, 20000, 1000):
        batch += journal.entries(UNIT, kubelet_batch(start, 1000))
        batch += journal.entries("containerd.service", [b"containerd: pulled image %d" % start])
    journal.write(batch)
    wait_until(lambda: anything_landed(fake_gcs.url, node.name), timeout=20, what="first journal object")
    node.kill9()
    at_kill = len(objects(fake_gcs.url, node.name))

    # Batch 2 while the agent is down (appended to the same file), batch 3 after the restart.
    journal.write(journal.entries(UNIT, kubelet_batch(20000, 500)))
    node.start(toml)
    journal.write(
        journal.entries(UNIT, [b"E1128 kubelet.go:1] multi-line error:\n\tgoroutine 1 [running]"])
        + journal.entries("containerd.service", [b"containerd: not kubelet"])
        + journal.entries(UNIT, kubelet_batch(20500, 500))
    )
    expected = journal.read(UNIT)
    assert expected.count(b"kubelet.go:") == 21001
    assert b"systemd[1]: Started kubelet.service" in expected
    wait_until(lambda: in_bucket(fake_gcs.url, node.name) == expected, timeout=60, what="all three batches")
    assert node.terminate() == 0

    found = logs_get(keysvc, node.name, tmp_path / "out")
    assert found == {source_id(SPEC): {1: expected}}
    assert b"containerd" not in expected
    print(f"kill -9 when {at_kill} of {len(objects(fake_gcs.url, node.name))} objects had landed")
    log = (node.root / "agent.log").read_bytes()
    assert b"journalctl_failed" in log  # the pulls before the journal existed
    assert node.key.encode() not in log
