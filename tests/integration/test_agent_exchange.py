"""Exchange, once, with real processes: the agent trades its key for a session; a copy is refused."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from agent.chunking import source_id
from keysvc.devtools import emulator
from tests.agent.stack import BIN, BUCKET, Keysvc, Node, landed, logs_get
from tests.faultproxy import FaultProxy
from tests.identity_docs import ACCOUNT, FakeAws
from tests.servers import Server, wait_until

pytestmark = pytest.mark.integration


def keysvc_cli(keysvc: Keysvc, *args: str) -> str:
    """Run the real keysvc CLI on the server's state and return its stdout."""
    out = subprocess.run(
        [str(BIN / "keysvc"), *args],
        env=keysvc.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout


def test_a_copy_of_the_key_is_refused_and_the_first_agent_keeps_shipping(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """The agent exchanges and ships; a second agent with a copied key exits 11 at once; the audit says so."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    log = tmp_path / "boot.log"
    first_bytes = b"booting 1\n"
    log.write_bytes(first_bytes)
    node = Node(tmp_path / "node", keysvc, "exch-node", (str(log),)).provision()
    node.start()
    wait_until(lambda: landed(fake_gcs.url, node.name, log, 1, first_bytes), what="first upload")
    state = node.root / "state"
    for name in ("session.json", "exchange-nonce.json"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert node.key not in (state / "session.json").read_text()
    check = subprocess.run(
        [str(BIN / "nodelogs-agent"), "check"],
        env={**node.env(), "NODELOGS_BUCKET_URL": fake_gcs.url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr  # it presented the session, not the key

    thief = Node(tmp_path / "thief", keysvc, node.name, (str(log),))
    thief.root.mkdir()
    (thief.root / "agent.toml").touch()
    shutil.copy2(node.key_file, thief.key_file)
    started = time.monotonic()
    assert thief.start().wait(15) == 11
    print(f"copied key refused after {time.monotonic() - started:.2f} s")
    assert thief.key_file.exists()  # a uniform refusal is not proof the key ended: it is kept
    assert not (thief.root / "state" / "session.json").exists()

    more = b"".join(b"line %d after the replay\n" % i for i in range(200))
    with log.open("ab") as handle:
        handle.write(more)
    wait_until(lambda: landed(fake_gcs.url, node.name, log, 1, first_bytes + more), what="shipping on")
    assert node.process is not None
    assert node.process.poll() is None
    assert node.terminate() == 0
    assert logs_get(keysvc, node.name, tmp_path / "out")[source_id(str(log))] == {1: first_bytes + more}

    shown = json.loads(keysvc_cli(keysvc, "keys", "show", node.key_id, "-o", "json"))
    assert shown["exchanges"] == 1
    assert shown["replays"] == 1  # the thief's exchange only, not `check`
    assert shown["session"] == "held"
    listed = json.loads(keysvc_cli(keysvc, "keys", "list", "--replayed", "-o", "json"))
    assert [k["key_id"] for k in listed] == [node.key_id]
    timeline = json.loads(keysvc_cli(keysvc, "audit", "show", node.key_id, "-o", "json"))
    kinds = [(e["event"], e["reason"]) for e in timeline["events"]]
    assert ("exchanged", None) in kinds
    assert ("refused", "replayed") in kinds
    assert "replayed" in keysvc_cli(keysvc, "audit", "show", node.key_id)
    assert json.loads(keysvc_cli(keysvc, "audit", "verify", "-o", "json"))["ok"] is True
    serve_log = (keysvc.state / "serve.log").read_text()
    assert "key_replayed" in serve_log
    assert node.key not in serve_log


@pytest.mark.parametrize(("moment", "exchanges"), [("before", 1), ("during", 2), ("after", 1)])
def test_kill9_during_the_exchange_still_yields_one_working_agent(
    tmp_path: Path, fake_gcs: Server, keysvc: Keysvc, moment: str, exchanges: int
) -> None:
    """kill -9 before, during (keysvc minted, agent not yet told) or after the exchange: the restart ships."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    slow = "slow:0.5"
    front = FaultProxy(
        keysvc.url, plan=lambda _m, path: slow if path.endswith("/v1/ingest/exchange") else None
    )
    try:
        log = tmp_path / "boot.log"
        data = b"".join(b"boot line %d\n" % i for i in range(50))
        log.write_bytes(data)
        node = Node(tmp_path / "node", keysvc, "crash-node", (str(log),)).provision()
        node.extra_env["NODELOGS_ENDPOINT"] = front.url
        node.start()
        session_file = node.root / "state" / "session.json"
        if moment == "during":  # the request reached keysvc; its answer is held back 0.5 s
            wait_until(lambda: front.counts[slow] >= 1, timeout=10, what="exchange sent")
        elif moment == "after":
            wait_until(session_file.exists, timeout=10, what="session persisted")
        node.kill9()
        assert moment != "during" or not session_file.exists()
        node.start()
        wait_until(
            lambda: landed(fake_gcs.url, node.name, log, 1, data), timeout=20, what="upload after kill"
        )
        assert node.terminate() == 0
    finally:
        front.close()
    shown = json.loads(keysvc_cli(keysvc, "keys", "show", node.key_id, "-o", "json"))
    assert shown["replays"] == 0
    assert shown["session"] == "held"
    assert shown["exchanges"] == exchanges
    assert logs_get(keysvc, node.name, tmp_path / "out")[source_id(str(log))] == {1: data}
    timeline = json.loads(keysvc_cli(keysvc, "audit", "show", node.key_id, "-o", "json"))
    superseded = [e for e in timeline["events"] if (e["event"], e["reason"]) == ("exchanged", "superseded")]
    assert len(superseded) == exchanges - 1
    assert json.loads(keysvc_cli(keysvc, "audit", "verify", "-o", "json"))["ok"] is True


def test_a_cluster_that_requires_the_identity_document(tmp_path: Path, fake_gcs: Server) -> None:
    """With [identity] require, an agent with a signed document beside its key ships; one without exits 11."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    aws = FakeAws()
    trust = aws.trust(tmp_path / "trust")
    service = Keysvc(tmp_path / "keysvc", fake_gcs.url).prepare()
    with (service.state / "keysvc.toml").open("a") as toml:
        toml.write(f'[identity]\ntrust_dir = "{trust}"\nrequire = true\nallowed_accounts = "{ACCOUNT}"\n')
    service.start()
    try:
        log = tmp_path / "boot.log"
        log.write_bytes(b"hello from a verified instance\n")
        without = Node(tmp_path / "without", service, "doc-less", (str(log),)).provision()
        assert without.start().wait(15) == 11
        node = Node(tmp_path / "node", service, "doc-node", (str(log),)).provision()
        document, signature = aws.document("i-0123456789abcdef0", pending=time.time())
        for name, value in (("identity-document", document), ("identity-signature", signature.encode())):
            (node.root / name).write_bytes(value)
            (node.root / name).chmod(0o600)
        node.start()
        wait_until(lambda: landed(fake_gcs.url, node.name, log, 1, log.read_bytes()), what="verified upload")
        assert node.terminate() == 0
        refusals = json.loads(keysvc_cli(service, "audit", "list", "--event", "refused", "-o", "json"))
        assert [r["reason"] for r in refusals if r["key_id"] == without.key_id] == ["missing_document"]
    finally:
        service.stop()
