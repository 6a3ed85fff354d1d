"""``keysvc logs get`` as a real process against fake-gcs-server: exact bytes, gaps, overlaps, follow."""

from __future__ import annotations

import gzip
import os
import select
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from keysvc.wire.objectnames import chunk_suffix, gap_suffix, generation_suffix, object_name
from tests import servers

pytestmark = pytest.mark.integration

PREFIX = "nodelogs"
CLUSTER = "prod-eu-1"


@dataclass
class Bucket:
    """A fresh bucket on the session's fake-gcs-server and a keysvc config pointing at it."""

    bucket: Any
    config: Path

    def put(self, node: str, source: str, stream: int, start: int, data: bytes) -> None:
        """Upload ``data`` as the chunk covering ``start``..``start+len(data)`` of one stream."""
        suffix = chunk_suffix(source, f"g{stream:06d}", start, start + len(data))
        blob = self.bucket.blob(object_name(PREFIX, CLUSTER, node, suffix))
        blob.upload_from_string(gzip.compress(data), content_type="application/gzip")

    def mark(self, node: str, suffix: str) -> None:
        """Upload a generation or gap record as the agent does."""
        blob = self.bucket.blob(object_name(PREFIX, CLUSTER, node, suffix))
        blob.upload_from_string(b"{}\n", content_type="application/json")

    def logs(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``keysvc logs get`` and return the finished process (text mode)."""
        return servers.run_cli(
            ["keysvc", "--config", str(self.config), "logs", "get", "--cluster", CLUSTER, *args], check=check
        )

    def logs_bytes(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run ``keysvc logs get`` and return stdout as bytes."""
        binary = Path(sys.executable).parent / "keysvc"
        argv = [str(binary), "--config", str(self.config), "logs", "get", "--cluster", CLUSTER, *args]
        return subprocess.run(argv, capture_output=True, timeout=60, check=False)


@pytest.fixture
def bucket(fake_gcs: servers.Server, tmp_path: Path) -> Bucket:
    """A new bucket and a keysvc TOML config (SQLite state, emulator endpoint, region ``eu``)."""
    client = storage.Client(
        project="nodelogs-local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=fake_gcs.url),
    )
    created = client.create_bucket(f"logs-{uuid.uuid4().hex[:12]}")
    config = tmp_path / "keysvc.toml"
    config.write_text(
        f'[state]\ndatabase = "sqlite:///{tmp_path}/keysvc.db"\naudit_signing_key = "{tmp_path}/audit.pem"\n'
        f'[gcs]\nendpoint = "{fake_gcs.url}"\n'
        f'[regions.eu]\nbucket = "{created.name}"\nprefix = "{PREFIX}"\n'
        f'[regions.us]\nbucket = "other-bucket"\nprefix = "{PREFIX}"\n'
    )
    return Bucket(created, config)


def boot_log(size: int, seed: int) -> bytes:
    """Realistic-looking log bytes with a NUL, invalid UTF-8 and ANSI escapes mixed in."""
    lines = [
        f"[{seed}.{i:06d}] cloud-init[{1000 + i}]: Running module ssh-authkey-fingerprints\n".encode()
        for i in range(size // 60 + 1)
    ]
    return (b"".join(lines) + b"\x00\xff\xfe\x1b[31mred\x1b[0m")[:size]


def test_streams_are_reassembled_byte_for_byte(bucket: Bucket, tmp_path: Path) -> None:
    """Chunks uploaded out of order come back exact: one source to stdout, and per-stream files."""
    node = "ip-10-0-0-1"
    first, second = boot_log(5000, 1), boot_log(777, 2)
    for start, end in ((3000, 5000), (0, 1200), (1200, 3000)):
        bucket.put(node, "cloud-init-output.log-3f2a", 1, start, first[start:end])
    bucket.put(node, "cloud-init-output.log-3f2a", 2, 0, second)
    result = bucket.logs_bytes("--node", node, "--region", "eu")
    assert result.returncode == 0, result.stderr
    assert result.stdout == first + second
    assert result.stderr == b""
    out = tmp_path / "out"
    bucket.put(node, "kubelet", 1, 0, b"kubelet started\n")
    files = bucket.logs_bytes("--node", node, "--region", "eu", "--output", str(out))
    assert files.returncode == 0, files.stderr
    assert (out / "cloud-init-output.log-3f2a" / "g000001.log").read_bytes() == first
    assert (out / "cloud-init-output.log-3f2a" / "g000002.log").read_bytes() == second
    assert (out / "kubelet" / "g000001.log").read_bytes() == b"kubelet started\n"


def test_gap_is_reported_and_fails(bucket: Bucket) -> None:
    """A missing chunk is named on stderr with its byte range, and the exit status is 1."""
    node = "ip-10-0-0-2"
    data = boot_log(300, 3)
    bucket.put(node, "syslog", 1, 0, data[:100])
    bucket.put(node, "syslog", 1, 200, data[200:])
    result = bucket.logs_bytes("--node", node, "--region", "eu")
    assert result.returncode == 1
    assert b"GAP in syslog/g000001 bytes 100-200 (100 bytes)" in result.stderr
    assert result.stdout == data[:100] + data[200:]


def test_recorded_gaps_and_holes_in_the_generation_sequence_fail(bucket: Bucket) -> None:
    """A recorded gap, a missing generation and a short predecessor are each named on stderr; exit 1."""
    node = "ip-10-0-0-9"
    bucket.put(node, "syslog", 1, 0, b"one\n")
    bucket.mark(node, generation_suffix("syslog", "g000001", None, None))
    bucket.mark(node, generation_suffix("syslog", "g000002", "g000001", 9))
    bucket.mark(node, generation_suffix("syslog", "g000004", "g000003", 0))
    bucket.put(node, "syslog", 4, 0, b"four\n")
    bucket.mark(node, gap_suffix("syslog", "g000004", 5, None, "truncated"))
    result = bucket.logs_bytes("--node", node, "--region", "eu")
    assert result.returncode == 1
    assert result.stdout == b"one\nfour\n"
    stderr = result.stderr.decode()
    assert "HOLE in syslog/g000001: the bucket holds bytes 0-4 but g000002's record says g000001" in stderr
    assert "HOLE in syslog/g000003: generation g000003 is missing" in stderr
    assert "HOLE in syslog/g000002" not in stderr  # an empty generation with its record is no hole
    assert "GAP RECORDED in syslog/g000004: the agent recorded bytes 5-end as lost (truncated)" in stderr
    assert "NOT A CHUNK" not in stderr


def test_overlap_is_reported_and_written_once(bucket: Bucket) -> None:
    """Two chunks claiming the same bytes are reported, and those bytes appear once in the output."""
    node = "ip-10-0-0-3"
    data = boot_log(400, 4)
    bucket.put(node, "syslog", 1, 0, data[:250])
    bucket.put(node, "syslog", 1, 200, data[200:])
    result = bucket.logs_bytes("--node", node, "--region", "eu", "--source", "syslog")
    assert result.returncode == 1
    assert b"OVERLAP in syslog/g000001 bytes 200-250 (50 bytes)" in result.stderr
    assert result.stdout == data


def test_several_sources_need_source_or_output(bucket: Bucket) -> None:
    """Without --source or --output, a node with two sources is refused rather than interleaved."""
    node = "ip-10-0-0-4"
    bucket.put(node, "syslog", 1, 0, b"a\n")
    bucket.put(node, "kubelet", 1, 0, b"b\n")
    result = bucket.logs("--node", node, "--region", "eu")
    assert result.returncode == 4
    assert "pass --source or --output" in result.stderr
    only = bucket.logs("--node", node, "--region", "eu", "--source", "kubelet")
    assert (only.returncode, only.stdout) == (0, "b\n")


def test_unknown_node_is_not_found(bucket: Bucket) -> None:
    """A node with no objects exits 3 with the location it looked at."""
    result = bucket.logs("--node", "ip-10-9-9-9", "--region", "eu")
    assert result.returncode == 3
    assert f"gs://{bucket.bucket.name}/{PREFIX}/{CLUSTER}/ip-10-9-9-9/" in result.stderr


def test_region_comes_from_the_key_store(bucket: Bucket) -> None:
    """Without --region, the node's region is taken from its key in the key store."""
    node = "ip-10-0-0-5"
    bucket.put(node, "syslog", 1, 0, b"from the key store\n")
    servers.run_cli(
        [
            "keysvc",
            "--config",
            str(bucket.config),
            "keys",
            "issue",
            "--cluster",
            CLUSTER,
            "--node",
            node,
            "--instance",
            "i-0123456789abcdef0",
            "--region",
            "eu",
        ]
    )
    result = bucket.logs("--node", node)
    assert (result.returncode, result.stdout) == (0, "from the key store\n"), result.stderr


def _read_until(process: subprocess.Popen[bytes], expected: bytes, timeout: float = 20.0) -> bytes:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(expected) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            piece = os.read(fd, 65536)
            if not piece:
                break
            got += piece
    return got


def test_follow_prints_new_chunks_as_they_land(bucket: Bucket) -> None:
    """With --follow, chunks uploaded later are printed in order, including one that filled a gap."""
    node = "ip-10-0-0-6"
    data = boot_log(3000, 6)
    bucket.put(node, "syslog", 1, 0, data[:1000])
    binary = Path(sys.executable).parent / "keysvc"
    argv = [
        str(binary),
        "--config",
        str(bucket.config),
        "logs",
        "get",
        "--cluster",
        CLUSTER,
        "--node",
        node,
        "--region",
        "eu",
        "--follow",
        "--interval",
        "0.2",
        "--gap-wait",
        "30",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _read_until(process, data[:1000]) == data[:1000]
        bucket.put(node, "syslog", 1, 2000, data[2000:])  # lands first: held back behind the gap
        time.sleep(0.6)
        bucket.put(node, "syslog", 1, 1000, data[1000:2000])
        assert _read_until(process, data[1000:]) == data[1000:]
        assert process.poll() is None
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"GAP" not in stderr
