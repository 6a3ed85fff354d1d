"""Unit tests of agent.progress: progress lines per source, the exit summary, rate-limited warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import structlog
from structlog.testing import capture_logs

from agent.progress import Progress, WarningLimiter, snapshot
from keysvc.wire import keyformat
from tests.agent.fake_cloud import FakeCloud
from tests.agent.test_runner import Running, make_config, wait_for


@dataclass
class Gen:
    """A current generation."""

    generation: int


@dataclass
class FakeTail:
    """The figures a FileTail exposes."""

    source_id: str
    path: str
    offset: int
    size: int
    current: Gen | None = field(default_factory=lambda: Gen(2))

    def available(self) -> int:
        """The file's size."""
        return self.size


@dataclass
class FakeDelivery:
    """Delivery's counters."""

    bytes_delivered: dict[str, int] = field(default_factory=dict)
    chunks_delivered: int = 0


TAILS = [FakeTail("app", "/var/log/app.log", 700, 1000), FakeTail("gone", "/var/log/late.log", 0, 0, None)]


def test_snapshot_reports_shipped_bytes_lag_and_generation() -> None:
    """Lag is the file end minus the staged offset; a missing file has no generation and no lag."""
    items = snapshot(TAILS, {"app": 1234})
    assert (items[0].generation, items[0].shipped_bytes, items[0].offset, items[0].lag_bytes) == (
        2,
        1234,
        700,
        300,
    )
    assert (items[1].generation, items[1].shipped_bytes, items[1].lag_bytes) == (None, 0, 0)


def test_a_line_per_source_at_first_sight_then_once_per_interval() -> None:
    """At 0 s both sources log, at 29 s neither, at 30 s both again."""
    progress = Progress(30.0)
    delivery = FakeDelivery({"app": 10})
    with capture_logs() as logs:
        progress.tick(0.0, TAILS, delivery)
        progress.tick(29.0, TAILS, delivery)
        progress.tick(30.0, TAILS, delivery)
    assert [(e["event"], e["source"]) for e in logs] == [
        ("source_progress", "app"),
        ("source_progress", "gone"),
    ] * 2
    assert (logs[0]["lag_bytes"], logs[0]["shipped_bytes"], logs[0]["generation"]) == (300, 10, 2)
    assert logs[1]["waiting_for_file"] is True


def test_the_summary_totals_every_source() -> None:
    """agent_summary carries run time, chunks, total bytes shipped and lag, and each source's figures."""
    with capture_logs() as logs:
        Progress().summary(TAILS, FakeDelivery({"app": 5000}, 7), 12.34)
    (summary,) = logs
    assert summary["event"] == "agent_summary"
    assert (summary["seconds"], summary["chunks_delivered"], summary["shipped_bytes"]) == (12.3, 7, 5000)
    assert summary["lag_bytes"] == 300
    assert [item["source"] for item in summary["sources"]] == ["app", "gone"]


def test_repeated_warnings_pass_once_per_interval_with_a_count() -> None:
    """Sixty failures a minute apart by one second give two lines, the second saying 59 were dropped."""
    now = [0.0]
    limiter = WarningLimiter(60.0, clock=lambda: now[0])
    with capture_logs(processors=[limiter]) as logs:
        log = structlog.get_logger()
        for second in range(61):
            now[0] = float(second)
            log.warning("journalctl_failed", unit="kubelet.service", code=1)
            log.warning("journalctl_failed", unit="other.service", code=1)
            log.info("source_progress", source="a")
    failed = [e for e in logs if e["event"] == "journalctl_failed"]
    assert [(e["unit"], e.get("suppressed")) for e in failed] == [
        ("kubelet.service", None),
        ("other.service", None),
        ("kubelet.service", 59),
        ("other.service", 59),
    ]
    assert sum(e["event"] == "source_progress" for e in logs) == 61


def test_the_running_agent_logs_progress_and_a_summary(tmp_path: Path) -> None:
    """A real Agent over the in-memory cloud logs source_progress with bytes shipped, then agent_summary."""
    cloud = FakeCloud(key=keyformat.mint().key)
    log_file = tmp_path / "boot.log"
    log_file.write_bytes(b"hello\n" * 100)
    config = make_config(tmp_path, (str(log_file),), progress_seconds=0.2)
    with capture_logs() as logs:
        run = Running(config, cloud)
        wait_for(lambda: any(e["event"] == "source_progress" and e["shipped_bytes"] == 600 for e in logs))
        assert run.stop() == 0
    progress = [e for e in logs if e["event"] == "source_progress" and e["shipped_bytes"] == 600]
    assert progress[0]["lag_bytes"] == 0
    assert progress[0]["generation"] == 1
    (summary,) = [e for e in logs if e["event"] == "agent_summary"]
    assert summary["shipped_bytes"] == 600
