"""The real agent's life: revoked -> exit 11 within 5 s; expired -> final flush, exit 10; then 12."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from keysvc.devtools import emulator
from tests.agent.stack import BIN, BUCKET, Keysvc, Node, anything_landed, landed, read_source
from tests.servers import Server, wait_until

pytestmark = pytest.mark.integration


def rerun(node: Node) -> subprocess.CompletedProcess[str]:
    """Run ``nodelogs-agent run`` again on the same node files and wait for it."""
    return subprocess.run(
        [str(BIN / "nodelogs-agent"), "run"],
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_revocation_stops_the_agent_within_5s_and_restart_exits_12(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """`keysvc keys revoke` on the same state ends an idle agent with 11 in < 5 s; the key file is gone."""
    log = tmp_path / "boot.log"
    log.write_bytes(b"booting\n")
    node = Node(tmp_path / "node", keysvc, "revoked-node", (str(log),)).provision()
    process = node.start()
    wait_until(lambda: anything_landed(fake_gcs.url, node.name), what="first upload")
    keysvc.revoke(node.key_id)
    revoked_at = time.monotonic()
    assert process.wait(10) == 11
    elapsed = time.monotonic() - revoked_at
    print(f"revocation to exit: {elapsed:.2f} s")
    assert elapsed < 5
    assert not node.key_file.exists()
    again = rerun(node)
    assert again.returncode == 12
    assert node.key not in again.stderr


def test_restart_after_refusal_exits_12_at_once(tmp_path: Path, fake_gcs: Server, keysvc: Keysvc) -> None:
    """After exit 11 the key file is removed and the next start exits 12 immediately with a clear message."""
    node = Node(tmp_path / "node", keysvc, "refused-node", (str(tmp_path / "none.log"),)).provision()
    keysvc.revoke(node.key_id)
    process = node.start()
    assert process.wait(10) == 11
    started = time.monotonic()
    again = rerun(node)
    assert again.returncode == 12
    assert time.monotonic() - started < 3
    assert "finished" in again.stderr or "absent" in again.stderr


def test_short_ttl_flushes_partial_line_then_exits_10(tmp_path: Path, fake_gcs: Server) -> None:
    """With KEYSVC_KEY_TTL_SECONDS=6 the agent ships its partial last line, exits 10, then 12 on restart."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    keysvc = Keysvc(tmp_path / "keysvc-short", fake_gcs.url, ttl=6).prepare().start()
    try:
        log = tmp_path / "boot.log"
        log.write_bytes(b"line one\nno newline yet")
        node = Node(tmp_path / "node", keysvc, "expiring-node", (str(log),)).provision()
        process = node.start("expiry_margin_seconds = 2\npartial_line_seconds = 3600\n")
        assert process.wait(15) == 10
        assert read_source(fake_gcs.url, node.name, str(log)) == {1: b"line one\nno newline yet"}
        assert not node.key_file.exists()
        assert rerun(node).returncode == 12
    finally:
        keysvc.stop()


def test_key_file_readable_by_others_is_refused_with_exit_2(tmp_path: Path, keysvc: Keysvc) -> None:
    """A key file with mode 0644 is refused before any network use, with a message naming the fix."""
    node = Node(tmp_path / "node", keysvc, "loose-node", (str(tmp_path / "x.log"),)).provision()
    node.key_file.chmod(0o644)
    result = rerun(node)
    assert result.returncode == 2
    assert "chmod 600" in result.stderr
    assert node.key not in result.stderr


def test_absent_key_file_exits_12(tmp_path: Path, keysvc: Keysvc) -> None:
    """Without a key file there is nothing to do: exit 12."""
    node = Node(tmp_path / "node", keysvc, "keyless-node", (str(tmp_path / "x.log"),))
    node.root.mkdir(parents=True)
    (node.root / "agent.toml").touch()
    assert rerun(node).returncode == 12


def test_agent_never_ships_its_own_log_file(tmp_path: Path, fake_gcs: Server, keysvc: Keysvc) -> None:
    """A source that is the agent's own stderr file is skipped, while other sources ship."""
    log = tmp_path / "boot.log"
    log.write_bytes(b"ship me\n")
    node = Node(tmp_path / "node", keysvc, "selfish-node", (str(log), str(tmp_path / "node" / "agent.log")))
    node.provision()
    node.start()
    wait_until(lambda: landed(fake_gcs.url, node.name, log, 1, b"ship me\n"), what="the other source")
    time.sleep(1.0)
    assert node.terminate() == 0
    assert read_source(fake_gcs.url, node.name, str(node.root / "agent.log")) == {}
    assert (node.root / "agent.log").stat().st_size > 0
