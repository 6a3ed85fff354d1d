"""End to end with real processes: keysvc serve, fake-gcs-server and nodelogs-agent, killed and restarted."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from agent.chunking import source_id
from tests.agent.stack import Keysvc, Node, anything_landed, landed, logs_get
from tests.servers import Server, wait_until

pytestmark = pytest.mark.integration


def shipped(gcs_url: str, node: str, path: Path, generation: int, expected: bytes) -> bool:
    """True once a source's generation in the bucket equals ``expected`` exactly."""
    return landed(gcs_url, node, path, generation, expected)


def test_rotation_truncation_late_files_and_kill9_reproduce_every_byte(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """Appends, rename rotation while down, copytruncate, late files and kill -9s: logs get is exact."""
    logs = tmp_path / "logs"
    (logs / "pods").mkdir(parents=True)
    rotated, truncated, big = logs / "rotated.log", logs / "truncated.log", logs / "big.log"
    node = Node(
        tmp_path / "node",
        keysvc,
        "e2e-node",
        (str(rotated), str(truncated), str(big), str(logs / "pods" / "*.log")),
    ).provision()
    toml = "chunk_bytes = 65536\nchunk_seconds = 0.3\npartial_line_seconds = 0.6\n"

    rotated_1 = (
        b"boot: starting\n" + "ünïcödé \x1b[1mbold\x1b[0m\n".encode() + b"\x00\xff\xfe invalid utf-8\n"
    )
    truncated_1 = b"kubelet: line 1\n" + os.urandom(5000) + b"\n"
    rotated.write_bytes(rotated_1)
    truncated.write_bytes(truncated_1)
    node.start(toml)
    wait_until(lambda: shipped(fake_gcs.url, node.name, rotated, 1, rotated_1), what="first upload")

    # Append a lot, then kill -9 in the middle of shipping it.
    more = b"".join(b"cloud-init[%d]: module %d ran\n" % (i, i) for i in range(20000))
    with rotated.open("ab") as handle:
        handle.write(more)
    rotated_1 += more
    time.sleep(0.15)
    node.kill9()

    # Rename rotation while the agent is down: the old file is found by inode and finished.
    with rotated.open("ab") as handle:
        handle.write(b"written just before rotation, no newline")
    rotated_1 += b"written just before rotation, no newline"
    rotated.rename(logs / "rotated.log.1")
    rotated_2 = b"after rotation\n"
    rotated.write_bytes(rotated_2)
    node.start(toml)
    wait_until(lambda: shipped(fake_gcs.url, node.name, rotated, 2, rotated_2), what="second generation")
    wait_until(lambda: shipped(fake_gcs.url, node.name, truncated, 1, truncated_1), what="truncated gen 1")

    # copytruncate while running: the copy is not a source; the truncated file starts generation 2.
    shutil.copyfile(truncated, logs / "truncated.log.1")
    with truncated.open("r+b") as handle:
        handle.truncate(0)
    time.sleep(0.5)
    truncated_2 = b"fresh after truncate\n"
    with truncated.open("ab") as handle:
        handle.write(truncated_2)
    # A late file matching the glob, and a 10 MB line without a newline (NULs, invalid UTF-8 and all).
    late = logs / "pods" / "late.log"
    late_bytes = b"x"
    late.write_bytes(late_bytes)
    big_bytes = os.urandom(10 * 1024 * 1024).replace(b"\n", b"_")
    big.write_bytes(big_bytes)
    time.sleep(0.4)
    node.kill9()
    node.start(toml)
    wait_until(lambda: shipped(fake_gcs.url, node.name, truncated, 2, truncated_2), what="after truncate")
    wait_until(lambda: shipped(fake_gcs.url, node.name, late, 1, late_bytes), what="late file")

    # Rename rotation while running: the old handle is finished, including a last write after the rename.
    with rotated.open("ab") as handle:
        rotated.rename(logs / "rotated.log.2")
        handle.write(b"last words of generation 2\n")
    rotated_2 += b"last words of generation 2\n"
    rotated_3 = b"generation 3\n"
    rotated.write_bytes(rotated_3)
    wait_until(lambda: shipped(fake_gcs.url, node.name, rotated, 3, rotated_3), what="third generation")
    assert node.terminate() == 0

    found = logs_get(keysvc, node.name, tmp_path / "out")
    assert found[source_id(str(rotated))] == {1: rotated_1, 2: rotated_2, 3: rotated_3}
    assert found[source_id(str(truncated))] == {1: truncated_1, 2: truncated_2}
    assert found[source_id(str(big))] == {1: big_bytes}
    assert found[source_id(str(late))] == {1: late_bytes}
    assert set(found) == {source_id(str(p)) for p in (rotated, truncated, big, late)}
    assert node.key.encode() not in (node.root / "agent.log").read_bytes()


def test_startup_to_first_upload_is_well_under_a_second(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """From exec to the first object landing takes well under a second (measured, printed)."""
    log = tmp_path / "cloud-init-output.log"
    log.write_bytes(b"Cloud-init v. 23.1 running 'init-local'\n")
    node = Node(tmp_path / "node", keysvc, "fast-node", (str(log),)).provision()
    started = time.monotonic()
    node.start()
    wait_until(lambda: anything_landed(fake_gcs.url, node.name), timeout=5, what="first object")
    elapsed = time.monotonic() - started
    print(f"startup to first upload: {elapsed:.3f} s")
    assert elapsed < 0.9
    assert node.terminate() == 0
