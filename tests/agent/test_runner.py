"""The main loop against an in-memory keysvc + bucket: exact bytes, rotation, stop conditions."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from agent import keyfile
from agent.checkpoint import StateStore
from agent.chunking import source_id
from agent.config import AgentConfig
from agent.errors import KeyExpired, KeyRefused, SettingMismatch
from agent.lifetime import Lifetime
from agent.runner import Agent
from agent.signals import Signals
from agent.sources import FileTail
from agent.transport import Response
from keysvc.wire import keyformat
from tests.agent.fake_cloud import FakeCloud, reassemble
from tests.agent.journal_files import Journal


def make_config(tmp_path: Path, sources: tuple[str, ...], **overrides: object) -> AgentConfig:
    """A fast-cutting configuration rooted in tmp_path."""
    settings: dict[str, object] = {
        "endpoint": "http://keysvc.test",
        "cluster": "c1",
        "node": "n1",
        "region": "us",
        "sources": sources,
        "key_file": str(tmp_path / "key"),
        "state_dir": str(tmp_path / "state"),
        "chunk_bytes": 4096,
        "chunk_seconds": 0.2,
        "partial_line_seconds": 0.4,
        "poll_seconds": 0.05,
        "discover_seconds": 0.1,
        "probe_seconds": 0.5,
        "expiry_margin_seconds": 0.5,
        "retry_max_wait": 0.2,
        "stop_flush_seconds": 5.0,
    }
    settings.update(overrides)
    return AgentConfig(**settings).validate()  # type: ignore[arg-type]


class Running:
    """An Agent in a background thread."""

    def __init__(
        self, config: AgentConfig, cloud: FakeCloud, *, deadline: float = float("inf"), life: bool = False
    ) -> None:
        key_path = Path(config.key_file)
        key_path.write_text(cloud.key + "\n")
        key_path.chmod(0o600)
        self.signals = Signals()
        key = keyfile.read_key(key_path)
        store = StateStore(Path(config.state_dir)).open()
        lifetime = Lifetime(Path(config.state_dir), key.key_id).start() if life else None
        self.agent = Agent(
            config, key, store, cloud, cloud, signals=self.signals, key_deadline=deadline, life=lifetime
        )
        self.result: int | BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.agent.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.result = exc

    def stop(self, timeout: float = 10.0) -> int | BaseException | None:
        """SIGTERM equivalent: flush and wait."""
        self.signals.terminate(time.monotonic())
        self.thread.join(timeout)
        return self.result


def wait_for(check: object, timeout: float = 10.0) -> None:
    """Poll a callable until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def stream_of(cloud: FakeCloud, path: Path, generation: int = 1) -> bytes:
    """The reassembled bytes of one source's generation."""
    tail = FileTail(str(path), StateStore(path.parent), skip=set())
    with cloud.lock:
        objects = dict(cloud.objects)
    try:
        return reassemble(objects).get((tail.source_id, f"g{generation:06d}"), b"")
    except AssertionError:
        return b""  # chunks of a batch land in parallel: a gap mid-flight means "not yet"


@pytest.fixture
def cloud() -> FakeCloud:
    """A fresh in-memory keysvc + bucket with a valid key."""
    return FakeCloud(key=keyformat.mint().key)


def test_ships_existing_and_appended_bytes_exactly(tmp_path: Path, cloud: FakeCloud) -> None:
    """Bytes present at start and appended later, binary and without a final newline, arrive exactly."""
    log = tmp_path / "boot.log"
    content = b"first line\n" + bytes(range(256)) * 40 + b"\x1b[31mred\x1b[0m\n\xff\xfe no newline"
    log.write_bytes(content)
    run = Running(make_config(tmp_path, (str(log),)), cloud)
    with log.open("ab") as handle:
        handle.write(b" ...continued\n" * 500)
    content += b" ...continued\n" * 500
    wait_for(lambda: stream_of(cloud, log) == content)
    with log.open("ab") as handle:
        handle.write(b"tail without newline")
    assert run.stop() == 0
    assert stream_of(cloud, log) == content + b"tail without newline"


def test_follows_rename_rotation_and_copytruncate(tmp_path: Path, cloud: FakeCloud) -> None:
    """A renamed file is finished as generation 1, and truncation starts generation 3 at byte 0."""
    log = tmp_path / "app.log"
    log.write_bytes(b"gen1 a\n")
    run = Running(make_config(tmp_path, (str(log),)), cloud)
    wait_for(lambda: stream_of(cloud, log) == b"gen1 a\n")
    with log.open("ab") as handle:
        log.rename(tmp_path / "app.log.1")
        handle.write(b"gen1 written after rename\n")
    log.write_bytes(b"gen2 line\n")
    wait_for(lambda: stream_of(cloud, log, 2) == b"gen2 line\n")
    assert stream_of(cloud, log) == b"gen1 a\ngen1 written after rename\n"
    with log.open("r+b") as handle:
        handle.truncate(0)
    time.sleep(0.2)
    with log.open("ab") as handle:
        handle.write(b"gen3\n")
    wait_for(lambda: stream_of(cloud, log, 3) == b"gen3\n")
    assert run.stop() == 0


def test_late_files_and_globs_are_picked_up(tmp_path: Path, cloud: FakeCloud) -> None:
    """A file matching a glob that appears after start is shipped too."""
    run = Running(make_config(tmp_path, (str(tmp_path / "*.log"),)), cloud)
    late = tmp_path / "late.log"
    late.write_bytes(b"x")
    wait_for(lambda: stream_of(cloud, late) == b"x")
    assert run.stop() == 0


def test_refusal_stops_removes_key_and_marks_finished(tmp_path: Path, cloud: FakeCloud) -> None:
    """A 401 from keysvc ends the run with KeyRefused within 5 s, deletes the key and marks it finished."""
    config = make_config(tmp_path, (str(tmp_path / "none.log"),))
    run = Running(config, cloud)
    time.sleep(0.3)
    cloud.refused = True
    refused_at = time.monotonic()
    run.thread.join(6)
    assert isinstance(run.result, KeyRefused)
    assert time.monotonic() - refused_at < 5
    assert not Path(config.key_file).exists()
    assert keyfile.finished_reason(Path(config.state_dir), None) == "refused"


def test_refusal_at_first_contact_keeps_the_key(tmp_path: Path, cloud: FakeCloud) -> None:
    """A uniform 401 from an endpoint that never accepted the key ends the run but keeps the key file."""
    cloud.refused = True
    config = make_config(tmp_path, (str(tmp_path / "none.log"),))
    run = Running(config, cloud, life=True)
    run.thread.join(6)
    assert isinstance(run.result, KeyRefused)
    assert "never accepted it: the key file is kept" in str(run.result)
    assert Path(config.key_file).exists()
    assert keyfile.finished_reason(Path(config.state_dir), None) is None


def test_refusal_by_an_endpoint_that_accepted_the_key_before_is_final(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    """After a run this endpoint accepted, a uniform 401 at the next start removes the key."""
    config = make_config(tmp_path, (str(tmp_path / "none.log"),))
    first = Running(config, cloud, life=True)
    wait_for(lambda: cloud.grant_calls > 0 and first.agent.last_contact > float("-inf"))
    assert first.stop() == 0
    cloud.refused = True
    second = Running(config, cloud, life=True)
    second.thread.join(6)
    assert isinstance(second.result, KeyRefused)
    assert not Path(config.key_file).exists()
    assert keyfile.finished_reason(Path(config.state_dir), None) == "refused"


@pytest.mark.parametrize(
    ("code", "error", "reason"),
    [("key_expired", KeyExpired, "expired"), ("key_revoked", KeyRefused, "refused")],
)
def test_a_final_answer_at_first_contact_removes_the_key(
    tmp_path: Path, cloud: FakeCloud, code: str, error: type[Exception], reason: str
) -> None:
    """keysvc's key_expired/key_revoked answer is final even at first contact: the key file goes."""
    cloud.refused = True
    cloud.refusal = json.dumps({"error": code, "message": "m"}).encode()
    config = make_config(tmp_path, (str(tmp_path / "none.log"),))
    run = Running(config, cloud, life=True)
    run.thread.join(6)
    assert isinstance(run.result, error)
    assert not Path(config.key_file).exists()
    assert keyfile.finished_reason(Path(config.state_dir), None) == reason


def test_a_mistyped_node_setting_stops_with_a_config_error_and_keeps_the_key(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    """NODELOGS_NODE=n2 against a key for n1: SettingMismatch at the first answer, key file untouched."""
    config = make_config(tmp_path, (str(tmp_path / "none.log"),), node="n2")
    run = Running(config, cloud, life=True)
    run.thread.join(6)
    assert isinstance(run.result, SettingMismatch)
    assert "setting node is 'n2'" in str(run.result)
    assert Path(config.key_file).exists()
    assert keyfile.finished_reason(Path(config.state_dir), None) is None


def test_an_unreachable_keysvc_still_stops_by_the_key_deadline(tmp_path: Path, cloud: FakeCloud) -> None:
    """keysvc never answers: KeyExpired at the local deadline (backoff sleeps end there), key removed."""
    cloud.faults.append(lambda method, url: Response(503, {}, b"down") if "ingest" in url else None)
    config = make_config(tmp_path, (str(tmp_path / "none.log"),), retry_max_wait=10.0)
    started = time.monotonic()
    run = Running(config, cloud, deadline=started + 2.0, life=True)
    run.thread.join(8)
    assert isinstance(run.result, KeyExpired)
    assert 1.4 <= time.monotonic() - started < 3.5
    assert not Path(config.key_file).exists()
    assert keyfile.finished_reason(Path(config.state_dir), None) == "expired"


def test_keysvc_s_answer_wins_over_the_local_bound(tmp_path: Path, cloud: FakeCloud) -> None:
    """A local bound 1 s away is replaced by keysvc's later expiry once it answers."""
    config = make_config(tmp_path, (str(tmp_path / "none.log"),))
    run = Running(config, cloud, deadline=time.monotonic() + 1.0)
    time.sleep(1.5)
    assert run.thread.is_alive()
    assert run.stop() == 0


def test_expiry_flushes_partial_line_then_stops(tmp_path: Path, cloud: FakeCloud) -> None:
    """Near expiry (by keysvc's clock) the partial last line is flushed and the run ends with KeyExpired."""
    cloud.lifetime = 2.0
    log = tmp_path / "boot.log"
    log.write_bytes(b"line\npartial")
    config = make_config(tmp_path, (str(log),), partial_line_seconds=60.0)
    run = Running(config, cloud)
    run.thread.join(6)
    assert isinstance(run.result, KeyExpired)
    assert stream_of(cloud, log) == b"line\npartial"
    assert keyfile.finished_reason(Path(config.state_dir), None) == "expired"
    assert not Path(config.key_file).exists()


def test_faults_are_retried_without_loss_or_duplication(tmp_path: Path, cloud: FakeCloud) -> None:
    """503s, 429s and 412-after-store on PUT and grants still give one exact copy of every byte."""
    counter = {"n": 0}

    def flaky(method: str, url: str) -> Response | None:
        counter["n"] += 1
        if counter["n"] % 3 == 0:
            return Response(503, {}, b"")
        if counter["n"] % 7 == 0:
            return Response(429, {"Retry-After": "0"}, b"")
        return None

    cloud.faults.append(flaky)
    log = tmp_path / "boot.log"
    content = os.urandom(30000)
    log.write_bytes(content)
    run = Running(make_config(tmp_path, (str(log),)), cloud)
    wait_for(lambda: stream_of(cloud, log) == content)
    assert run.stop() == 0


def test_restart_resumes_without_overlap(tmp_path: Path, cloud: FakeCloud) -> None:
    """A second run on the same state continues where the first stopped: no gap, no overlap."""
    log = tmp_path / "boot.log"
    log.write_bytes(b"one\n" * 2000)
    config = make_config(tmp_path, (str(log),))
    assert Running(config, cloud).stop() == 0
    with log.open("ab") as handle:
        handle.write(b"two\n" * 2000)
    run = Running(config, cloud)
    wait_for(lambda: stream_of(cloud, log) == b"one\n" * 2000 + b"two\n" * 2000)
    assert run.stop() == 0


def test_delivery_cut_short_by_expiry_is_finished_in_the_final_flush(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    """PUTs failing until past the flush point: the pending intent goes first in the final flush, no gap."""
    cloud.lifetime = 4.0
    failing_until = time.monotonic() + 2.5
    cloud.faults.append(
        lambda method, _url: (
            Response(503, {}, b"") if method == "PUT" and time.monotonic() < failing_until else None
        )
    )
    log = tmp_path / "boot.log"
    log.write_bytes(b"early line\n" * 100)
    run = Running(make_config(tmp_path, (str(log),), expiry_margin_seconds=2.0), cloud)
    time.sleep(1.0)
    with log.open("ab") as handle:
        handle.write(b"later line\n")
    run.thread.join(8)
    assert isinstance(run.result, KeyExpired)
    assert stream_of(cloud, log) == b"early line\n" * 100 + b"later line\n"


def test_stop_while_bucket_down_keeps_the_intent_for_the_next_run(tmp_path: Path, cloud: FakeCloud) -> None:
    """SIGTERM with the bucket down exits 0 after the flush budget; the next run re-sends the chunks."""
    cloud.faults.append(lambda method, _url: Response(503, {}, b"") if method == "PUT" else None)
    log = tmp_path / "boot.log"
    log.write_bytes(b"must not be lost\n")
    config = make_config(tmp_path, (str(log),), stop_flush_seconds=0.5)
    run = Running(config, cloud)
    time.sleep(0.5)
    assert run.stop() == 0
    assert list((Path(config.state_dir) / "intents").iterdir())
    cloud.faults.clear()
    run = Running(config, cloud)
    wait_for(lambda: stream_of(cloud, log) == b"must not be lost\n")
    assert run.stop() == 0


def test_retries_after_sigterm_still_back_off(tmp_path: Path, cloud: FakeCloud) -> None:
    """During the SIGTERM flush a bucket that keeps failing is retried with backoff, not in a busy loop."""
    puts_after_stop: list[float] = []
    stopped = threading.Event()

    def failing_put(method: str, _url: str) -> Response | None:
        if method != "PUT":
            return None
        if stopped.is_set():
            puts_after_stop.append(time.monotonic())
        return Response(503, {}, b"")

    cloud.faults.append(failing_put)
    log = tmp_path / "boot.log"
    log.write_bytes(b"must not be lost\n")
    config = make_config(tmp_path, (str(log),), stop_flush_seconds=1.0, retry_max_wait=0.2)
    run = Running(config, cloud)
    time.sleep(0.5)
    stopped.set()
    assert run.stop() == 0
    # Full-jitter backoff capped at 0.2 s averages 0.1 s a retry: about 10 PUTs in the 1 s budget.
    assert 1 <= len(puts_after_stop) <= 60
    assert list((Path(config.state_dir) / "intents").iterdir())


def test_journal_units_are_spooled_and_shipped(tmp_path: Path, cloud: FakeCloud) -> None:
    """journal:kubelet is read by the real journalctl from journal_directory and shipped as its own source."""
    journal = Journal(tmp_path / "journal")
    journal.write(
        journal.entries("kubelet.service", [b"Starting kubelet", b"ok"])
        + journal.entries("containerd.service", [b"not this unit"])
    )
    config = make_config(
        tmp_path,
        ("journal:kubelet", "journal:nodelogs-agent"),
        journal_directory=str(journal.directory),
    )
    run = Running(config, cloud)
    expected = journal.read("kubelet.service")
    assert expected.count(b"\n") == 2

    def shipped() -> bytes:
        with cloud.lock:
            objects = dict(cloud.objects)
        try:
            return reassemble(objects).get((source_id("journal:kubelet"), "g000001"), b"")
        except AssertionError:
            return b""

    wait_for(lambda: shipped() == expected)
    assert run.stop() == 0
    assert all(not name.startswith(source_id("journal:nodelogs-agent")) for name in cloud.objects)
