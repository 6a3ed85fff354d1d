"""The real agent's life: revoked -> exit 11 within 5 s; expired -> final flush, exit 10; then 12."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from keysvc.devtools import emulator
from keysvc.wire import keyformat
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


def key_state(keysvc: Keysvc, key_id: str) -> str:
    """The key's state as `keysvc keys show -o json` reports it."""
    out = subprocess.run(
        [str(BIN / "keysvc"), "keys", "show", key_id, "-o", "json"],
        env=keysvc.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return str(json.loads(out.stdout)["state"])


def test_restart_after_refusal_exits_12_at_once(tmp_path: Path, fake_gcs: Server, keysvc: Keysvc) -> None:
    """After a final exit 11 (revoked after use) the key file is gone and the next start exits 12 at once."""
    log = tmp_path / "boot.log"
    log.write_bytes(b"booting\n")
    node = Node(tmp_path / "node", keysvc, "refused-node", (str(log),)).provision()
    node.start()
    wait_until(lambda: anything_landed(fake_gcs.url, node.name), what="first upload")
    assert node.terminate() == 0
    keysvc.revoke(node.key_id)
    assert rerun(node).returncode == 11
    assert not node.key_file.exists()
    started = time.monotonic()
    again = rerun(node)
    assert again.returncode == 12
    assert time.monotonic() - started < 3
    assert "finished" in again.stderr or "absent" in again.stderr


def test_a_key_revoked_before_first_contact_is_kept_until_its_expiry(tmp_path: Path, keysvc: Keysvc) -> None:
    """Revoked before any use the refusal is uniform: exit 11, key kept; past its expiry exit 10, key gone."""
    node = Node(tmp_path / "node", keysvc, "early-revoked", (str(tmp_path / "none.log"),)).provision()
    keysvc.revoke(node.key_id)
    node.extra_env["NODELOGS_KEY_EXPIRES_AT"] = str(int(time.time()) + 4)
    first = rerun(node)
    assert first.returncode == 11
    assert "the key file is kept" in first.stderr
    assert node.key_file.exists()
    time.sleep(max(0.0, float(node.extra_env["NODELOGS_KEY_EXPIRES_AT"]) - time.time() + 0.5))
    assert rerun(node).returncode == 10
    assert not node.key_file.exists()
    assert rerun(node).returncode == 12


def test_a_mistyped_node_setting_exits_2_and_keeps_a_live_key(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """NODELOGS_NODE with a typo against real keysvc: exit 2, one line naming it, key file kept, key live."""
    log = tmp_path / "boot.log"
    log.write_bytes(b"booting\n")
    node = Node(tmp_path / "node", keysvc, "typo-node", (str(log),)).provision()
    node.extra_env["NODELOGS_NODE"] = "typo-nod"
    result = rerun(node)
    assert result.returncode == 2
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, result.stderr
    assert plain[0].startswith("nodelogs-agent: configuration error: setting node is 'typo-nod' but key")
    assert "Traceback" not in result.stderr
    assert "NODELOGS_NODE" in result.stderr
    assert node.key not in result.stderr
    assert node.key_file.exists()
    assert key_state(keysvc, node.key_id) == "live"
    del node.extra_env["NODELOGS_NODE"]
    node.start()  # the same key works once the setting is fixed
    wait_until(lambda: landed(fake_gcs.url, node.name, log, 1, b"booting\n"), what="upload after the fix")
    assert node.terminate() == 0


@pytest.mark.parametrize("endpoint", ["refusing", "silent"])
def test_an_unreachable_endpoint_still_stops_by_the_rendered_expiry(tmp_path: Path, endpoint: str) -> None:
    """keysvc never answers (nothing listens, or a listener that never replies): exit 10 by the expiry."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts into its backlog, never answers
    closed = Keysvc(tmp_path / "nowhere", "http://127.0.0.1:9")  # nothing listens on port 9
    if endpoint == "silent":
        closed.port = silent.getsockname()[1]
    node = Node(tmp_path / "node", closed, "lonely-node", (str(tmp_path / "none.log"),))
    node.root.mkdir(parents=True)
    (node.root / "agent.toml").write_text("expiry_margin_seconds = 1\n")
    minted = keyformat.mint()
    fd = os.open(node.key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, minted.key.encode() + b"\n")
    os.close(fd)
    expires = time.time() + 6
    node.extra_env["NODELOGS_KEY_EXPIRES_AT"] = f"{expires:.0f}"
    if endpoint == "refusing":
        node.extra_env["NODELOGS_ENDPOINT"] = "http://127.0.0.1:9"
    started = time.time()
    with silent:
        result = rerun(node)
    ended = time.time()
    print(f"exit {result.returncode} at {ended - started:.2f} s; bound {expires - started:.2f} s")
    assert result.returncode == 10, result.stderr
    assert round(expires) - 1.5 <= ended <= round(expires) + 1.0  # kept trying, then stopped by the bound
    assert '"keysvc_never_answered"' in result.stderr
    assert not node.key_file.exists()
    assert minted.key not in result.stderr


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


def test_an_unusable_state_dir_exits_2_at_once_without_a_traceback(tmp_path: Path, keysvc: Keysvc) -> None:
    """`--state-dir /proc/x` is exit 2 within a second: one line naming the setting, the key kept."""
    node = Node(tmp_path / "node", keysvc, "procfs-node", (str(tmp_path / "x.log"),)).provision()
    node.extra_env["NODELOGS_STATE_DIR"] = "/proc/x"
    started = time.monotonic()
    result = rerun(node)
    assert result.returncode == 2
    assert time.monotonic() - started < 3
    assert result.stderr.splitlines() == [
        "nodelogs-agent: configuration error: state_dir /proc/x cannot be used: No such file or directory "
        "(set NODELOGS_STATE_DIR or --state-dir)"
    ]
    assert node.key_file.exists()


def test_the_journal_shows_progress_a_summary_and_one_warning_for_a_failing_unit(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """A file and a journald unit journalctl fails on: progress lines for both, one warning, a summary."""
    log = tmp_path / "boot.log"
    log.write_bytes(b"booting\n" * 50)
    node = Node(tmp_path / "node", keysvc, "chatty-node", (str(log), "journal:no-such-unit.service"))
    node.provision()
    node.start('progress_seconds = 1\njournal_directory = "/nonexistent-journal"\n')
    wait_until(lambda: landed(fake_gcs.url, node.name, log, 1, b"booting\n" * 50), what="the file")
    time.sleep(4)
    assert node.terminate() == 0
    events = [json.loads(line) for line in (node.root / "agent.log").read_text().splitlines()]
    names = [event["event"] for event in events]
    print({name: names.count(name) for name in set(names)})
    assert names.count("journalctl_failed") == 1  # about 5 pulls failed, once a second
    progress = [e for e in events if e["event"] == "source_progress" and e["path"] == str(log)]
    assert len(progress) >= 3
    assert progress[-1]["shipped_bytes"] == 400
    assert (progress[-1]["lag_bytes"], progress[-1]["generation"]) == (0, 1)
    assert any(e["event"] == "source_progress" and e["source"].startswith("journal") for e in events)
    (summary,) = [e for e in events if e["event"] == "agent_summary"]
    assert summary["shipped_bytes"] == 400
    assert summary["lag_bytes"] == 0
