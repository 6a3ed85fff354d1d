"""Rotations while the agent is stopped or cut off, real processes: every generation once, losses reported."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.chunking import source_id
from keysvc.devtools import emulator
from tests.agent.stack import BUCKET, Keysvc, Node, landed, logs_get, logs_get_result
from tests.servers import Server, wait_until

pytestmark = pytest.mark.integration

TOML = "chunk_bytes = 65536\nchunk_seconds = 0.1\npartial_line_seconds = 0.2\nretry_max_wait = 0.5\n"


@pytest.fixture
def keysvc(tmp_path: Path, fake_gcs: Server) -> Iterator[Keysvc]:
    """A real keysvc serve whose signed URLs point straight at fake-gcs-server."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    service = Keysvc(tmp_path / "keysvc", fake_gcs.url).prepare().start()
    yield service
    service.stop()


def rotate(path: Path, keep: int, *, compress_from: int | None = None) -> None:
    """logrotate's numbered shift (``rotate keep``), optionally gzipping ``.N`` for N >= compress_from."""
    for n in range(keep, 0, -1):
        for ext in ("", ".gz"):
            old = path.with_name(f"{path.name}.{n}{ext}")
            if old.exists():
                old.unlink() if n == keep else old.rename(path.with_name(f"{path.name}.{n + 1}{ext}"))
    path.rename(path.with_name(f"{path.name}.1"))
    for n in range(compress_from or keep + 1, keep + 1):
        plain = path.with_name(f"{path.name}.{n}")
        if plain.exists():
            plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
            plain.unlink()


def lines(tag: str, count: int) -> bytes:
    """``count`` numbered lines tagged with their generation."""
    return b"".join(b"%s line %05d \xff\x00 payload\n" % (tag.encode(), i) for i in range(count))


def run_rotations(
    path: Path, generations: list[bytes], *, compress_from: int | None = None, keep: int = 5
) -> None:
    """Rotate once per later generation, writing each in turn to a fresh file at ``path``."""
    for content in generations:
        rotate(path, keep, compress_from=compress_from)
        path.write_bytes(content)


def wait_all(fake_gcs: Server, node: Node, path: Path, expected: dict[int, bytes]) -> None:
    """Wait until every generation of the source is in the bucket exactly."""
    for generation, content in expected.items():
        wait_until(
            lambda g=generation, c=content: landed(fake_gcs.url, node.name, path, g, c),  # type: ignore[misc]
            timeout=60,
            what=f"generation {generation} shipped",
        )


def test_two_rotations_while_stopped_ship_every_generation(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """Stop (SIGTERM), rotate twice, start: generations 1, 2 and 3 are in the bucket exactly, no hole."""
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    one, two, three = lines("one", 3000), lines("two", 2000), lines("three", 100)
    path.write_bytes(one[:50_000])
    node = Node(tmp_path / "node", keysvc, "rot-stop", (str(path),)).provision()
    node.start(TOML)
    wait_all(fake_gcs, node, path, {1: one[:50_000]})
    assert node.terminate() == 0
    with path.open("ab") as handle:
        handle.write(one[50_000:])
    run_rotations(path, [two, three])
    node.start(TOML)
    wait_all(fake_gcs, node, path, {1: one, 2: two, 3: three})
    assert node.terminate() == 0
    assert logs_get(keysvc, node.name, tmp_path / "out") == {source_id(str(path)): {1: one, 2: two, 3: three}}


def test_three_rotations_while_keysvc_is_down_ship_every_generation(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """The agent keeps running while keysvc is down through three rotations; all four generations arrive."""
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    gens = [lines(f"g{n}", 500 * n) for n in range(1, 5)]
    path.write_bytes(b"first\n")
    node = Node(tmp_path / "node", keysvc, "rot-down", (str(path),)).provision()
    node.start(TOML)
    wait_all(fake_gcs, node, path, {1: b"first\n"})
    keysvc.stop()
    with path.open("ab") as handle:
        handle.write(gens[0])
    run_rotations(path, gens[1:], keep=2)  # rotate 2 deletes generation 1: only its open handle is left
    keysvc.start()
    expected = {1: b"first\n" + gens[0], 2: gens[1], 3: gens[2], 4: gens[3]}
    wait_all(fake_gcs, node, path, expected)
    assert node.terminate() == 0
    assert logs_get(keysvc, node.name, tmp_path / "out") == {source_id(str(path)): expected}


def test_compressed_middle_generation_is_read_through_gzip(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """delaycompress + compress while stopped: the unsent rest and a whole middle generation come from .gz."""
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    one, two, three, four = lines("one", 4000), lines("two", 3000), os.urandom(70_000), lines("four", 10)
    path.write_bytes(one[:1000])
    node = Node(tmp_path / "node", keysvc, "rot-gz", (str(path),)).provision()
    node.start(TOML)
    wait_all(fake_gcs, node, path, {1: one[:1000]})
    node.kill9()
    with path.open("ab") as handle:
        handle.write(one[1000:])
    run_rotations(path, [two, three, four], compress_from=2)
    assert (path.parent / "app.log.3.gz").exists()
    assert (path.parent / "app.log.2.gz").exists()
    node.start(TOML)
    expected = {1: one, 2: two, 3: three, 4: four}
    wait_all(fake_gcs, node, path, expected)
    assert node.terminate() == 0
    assert logs_get(keysvc, node.name, tmp_path / "out") == {source_id(str(path)): expected}


def test_generation_deleted_while_stopped_is_reported_by_logs_get(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """With rotate 1, generation 1's unsent rest is deleted while stopped: logs get names the gap, exits 1."""
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    path.write_bytes(b"shipped\n")
    node = Node(tmp_path / "node", keysvc, "rot-del", (str(path),)).provision()
    node.start(TOML)
    wait_all(fake_gcs, node, path, {1: b"shipped\n"})
    assert node.terminate() == 0
    with path.open("ab") as handle:
        handle.write(b"lost forever\n")
    run_rotations(path, [b"two\n", b"three\n"], keep=1)
    node.start(TOML)
    wait_all(fake_gcs, node, path, {2: b"two\n", 3: b"three\n"})
    assert node.terminate() == 0
    code, stderr, found = logs_get_result(keysvc, node.name, tmp_path / "out")
    assert code == 1, stderr
    sid = source_id(str(path))
    assert f"GAP RECORDED in {sid}/g000001: the agent recorded bytes 8-end as lost (deleted)" in stderr
    assert found == {sid: {1: b"shipped\n", 2: b"two\n", 3: b"three\n"}}
