"""The agent torture run: real keysvc, fake-gcs-server behind a faulty create-only front, kill -9s, rotations.

Not collected by pytest (no ``test_`` prefix): ``tests/integration/test_agent_torture.py`` runs a short
version, ``tests/torture_agent.py`` the long one. One run:

- four logs, each rotated by a scheme nodes use: logrotate's numbered shift with ``delaycompress`` and
  ``compress``, ``dateext`` (older ones gzipped), ``copytruncate``, and kubelet's ``0.log`` ->
  ``0.log.<timestamp>`` (older ones gzipped). Rotations happen while the agent runs, and several at a
  time while it is down;
- content with lines over 64 KiB, invalid UTF-8, NUL bytes, and secrets (nodelogs keys, AWS secret
  keys) written in two pieces with a pause between;
- the agent killed with SIGKILL at random moments, 30% of PUTs failing (503, 429, reset, timeout) in
  front of a bucket that is create-only as real GCS is, and keysvc down once;
- at the end, ``keysvc logs get``. Every generation of every log must be in the bucket exactly, apart
  from the masked secrets, or its missing bytes must be reported by a gap record. Nothing else may
  differ, and no secret may appear anywhere.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import random
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from agent.chunking import source_id
from keysvc.devtools import emulator
from keysvc.wire import keyformat
from tests.agent.stack import BUCKET, Keysvc, Node, fetch_streams, logs_get_result
from tests.faultproxy import FaultProxy, random_plan
from tests.servers import Server

PUT_FAULTS = ("status:503", "status:429", "reset", "timeout")
TOML = (
    "chunk_bytes = 65536\nchunk_seconds = 0.2\npartial_line_seconds = 0.4\nchunks_per_batch = 4\n"
    "request_timeout = 0.7\nretry_max_wait = 0.5\n"
)
_GAP = re.compile(
    r"GAP RECORDED in (?P<source>[^/]+)/g(?P<gen>\d{6}): the agent recorded bytes (?P<start>\d+)-"
)


class CreateOnlyFront(FaultProxy):
    """A fault front that, like real GCS with ``x-goog-if-generation-match: 0``, stores an object once.

    A second PUT of a stored object is answered 412 without reaching the bucket; every PUT body that
    reached the front is remembered by SHA-256, so a re-PUT with different bytes is caught.
    """

    def __init__(self, upstream: str, rate: float, seed: int) -> None:
        super().__init__(upstream, random_plan(seed, rate, PUT_FAULTS, ("PUT",)), hold_seconds=1.0)
        self.bodies: dict[str, set[str]] = {}
        self.stored: set[str] = set()
        self.duplicates = 0

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if handler.command != "PUT":
            return super()._forward(handler, body)
        name = urlsplit(handler.path).path
        with self._lock:
            self.bodies.setdefault(name, set()).add(hashlib.sha256(body).hexdigest())
            if name in self.stored:
                self.duplicates += 1
                return 412, {}, b"<Error><Code>PreconditionFailed</Code></Error>"
        status, headers, answer = super()._forward(handler, body)
        if status in (200, 201):
            with self._lock:
                self.stored.add(name)
        return status, headers, answer


@dataclass
class Log:
    """One log file on the node, its rotation scheme, and every generation's bytes as written."""

    path: Path
    scheme: str
    generations: list[bytearray] = field(default_factory=lambda: [bytearray()])
    #: Per generation, the (start, end) spans of secret bytes that must come back masked.
    secrets: list[list[tuple[int, int]]] = field(default_factory=lambda: [[]])
    rotations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, data: bytes) -> None:
        """Append ``data`` (the caller holds the lock)."""
        with self.path.open("ab") as handle:
            handle.write(data)
        self.generations[-1] += data

    def rotate(self) -> None:
        """Rotate by the log's scheme (the caller holds the lock); a new generation starts."""
        self.rotations += 1
        {
            "numbered": self._numbered,
            "dateext": self._dated,
            "copytruncate": self._copytruncate,
            "kubelet": self._kubelet,
        }[self.scheme]()
        self.generations.append(bytearray())
        self.secrets.append([])

    def _shift(self, keep: int) -> None:
        for n in range(keep, 0, -1):
            for ext in ("", ".gz"):
                old = self.path.with_name(f"{self.path.name}.{n}{ext}")
                if old.exists():
                    if n == keep:
                        old.unlink()
                    else:
                        old.rename(self.path.with_name(f"{self.path.name}.{n + 1}{ext}"))

    def _numbered(self) -> None:
        self._shift(4)
        self.path.rename(self.path.with_name(self.path.name + ".1"))
        second = self.path.with_name(self.path.name + ".2")
        if second.exists():
            gzip_in_place(second)  # delaycompress: .1 stays plain one more round
        self.path.touch()

    def _copytruncate(self) -> None:
        self._shift(3)
        shutil.copyfile(self.path, self.path.with_name(self.path.name + ".1"))
        with self.path.open("r+b") as handle:
            handle.truncate(0)

    def _stamped(self, separator: str, stamp: str, keep: int) -> None:
        self.path.rename(self.path.with_name(f"{self.path.name}{separator}{stamp}"))
        rotated = sorted(
            (p for p in self.path.parent.iterdir() if p.name.startswith(self.path.name + separator)),
            key=lambda p: p.name.removesuffix(".gz"),
        )
        for old in rotated[:-1]:
            if not old.name.endswith(".gz"):
                gzip_in_place(old)
        for old in rotated[: max(0, len(rotated) - keep)]:
            old.with_name(old.name + ".gz").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
        self.path.touch()

    def _dated(self) -> None:
        self._stamped("-", f"202612{self.rotations:02d}", keep=4)

    def _kubelet(self) -> None:
        self._stamped(".", f"20261201-12{self.rotations // 60:02d}{self.rotations % 60:02d}", keep=4)


def gzip_in_place(path: Path) -> None:
    """``gzip path`` as logrotate runs it: path.gz with the same mtime, then path is removed."""
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    info = path.stat()
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    path.unlink()


def make_logs(root: Path) -> list[Log]:
    """The four logs, one per rotation scheme, each with a first line."""
    (root / "pods").mkdir(parents=True)
    logs = [
        Log(root / "numbered.log", "numbered"),
        Log(root / "dated.log", "dateext"),
        Log(root / "truncated.log", "copytruncate"),
        Log(root / "pods" / "0.log", "kubelet"),
    ]
    for log in logs:
        with log.lock:
            log.write(b"first line of %s\n" % log.scheme.encode())
    return logs


def writer(logs: list[Log], stop: threading.Event, seed: int, rotate_every: int) -> None:
    """Append varied lines; split secrets across two writes; rotate each log every so many writes."""
    rng = random.Random(seed)  # noqa: S311 - reproducible workload, not crypto
    n = 0
    while not stop.is_set():
        log = rng.choice(logs)
        kind = rng.random()
        with log.lock:
            if kind < 0.03:
                _write_secret(log, rng)
            elif kind < 0.05:
                log.write(b"L" * rng.randint(66_000, 140_000) + b"\n")
            elif kind < 0.15:
                log.write(
                    b"%06d bin \xff\xfe\x00\x00 %s\n" % (n, os.urandom(rng.randint(1, 400)).hex().encode())
                )
            else:
                log.write(b"%06d systemd[1]: Started unit %d.\n" % (n, rng.randint(0, 10**6)))
            if rng.random() < 1 / rotate_every:
                log.rotate()
        n += 1
        time.sleep(rng.random() * 0.003)


def _write_secret(log: Log, rng: random.Random) -> None:
    """Write a line with a secret in two pieces with a pause between, and remember the secret's span."""
    if rng.random() < 0.5:
        key = keyformat.mint().key.encode()
        line, secret_at = b"token=" + key + b" used\n", 6 + len("nlk1_") + 16 + 1
        secret_end = 6 + len(key)
    else:
        value = os.urandom(20).hex().encode()
        line = b"aws_secret_access_key = " + value + b"\n"
        secret_at, secret_end = len(line) - 1 - len(value), len(line) - 1
    base = len(log.generations[-1])
    cut = rng.randint(secret_at + 1, secret_end - 1)
    log.write(line[:cut])
    time.sleep(rng.uniform(0.05, 0.6))  # the log's lock is held: no rotation splits the secret's line
    log.write(line[cut:])
    log.secrets[-1].append((base + secret_at, base + secret_end))


@dataclass
class Outcome:
    """What a run found: figures, and the problems that make it fail."""

    problems: list[str] = field(default_factory=list)
    bytes_written: int = 0
    bytes_reported_lost: int = 0
    bytes_lost_silently: int = 0
    generations: int = 0
    kills: int = 0
    duplicate_puts: int = 0
    peak_rss_mib: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)


def compare(truth: bytes, secrets: list[tuple[int, int]], shipped: bytes) -> str | None:
    """Why ``shipped`` is not ``truth`` with its secrets masked; ``None`` when it is.

    A byte may differ only by being ``*`` on a line that holds a secret (redaction fails closed at a
    chunk's end, so it may mask a little more than the secret); every secret byte must be masked.
    """
    if len(shipped) != len(truth):
        return f"length {len(shipped)} != {len(truth)}"
    for start, end in secrets:
        if shipped[start:end].strip(b"*"):
            return f"secret at {start}-{end} not masked"
    if shipped == truth:
        return None if not secrets else "secrets not masked"
    lines = [(truth.rfind(b"\n", 0, s) + 1, truth.find(b"\n", e)) for s, e in secrets]
    for index in (i for i in range(len(truth)) if truth[i] != shipped[i]):
        if shipped[index] != ord("*") or not any(lo <= index <= hi for lo, hi in lines):
            return f"byte {index} differs outside a secret's line"
    return None


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process, in MiB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def check(
    logs: list[Log], fake_gcs: Server, keysvc: Keysvc, node: Node, *, out: Path, outcome: Outcome
) -> None:
    """Compare the bucket with what was written, through ``keysvc logs get``; fill in ``outcome``."""
    code, stderr, found = logs_get_result(keysvc, node.name, out)
    (out / "stderr.txt").write_text(stderr)
    for log in logs:  # what was written, for a post-mortem
        folder = out / "written" / source_id(str(log.path))
        folder.mkdir(parents=True, exist_ok=True)
        for number, generation in enumerate(log.generations, start=1):
            (folder / f"g{number:06d}.log").write_bytes(bytes(generation))
    reported: dict[tuple[str, int], int] = {}
    for match in _GAP.finditer(stderr):
        reported[(match["source"], int(match["gen"]))] = int(match["start"])
    unexplained = [
        line for line in stderr.splitlines() if "GAP RECORDED" not in line and "NOTE" not in line and line
    ]
    if reported and code != 1:
        outcome.problems.append(f"logs get reported gaps but exited {code}")
    if any("problem(s)" not in line for line in unexplained):
        outcome.problems.append(f"logs get reported more than recorded gaps: {unexplained}")
    for log in logs:
        _check_log(log, found.get(source_id(str(log.path)), {}), reported, outcome)
    everything = b"".join(b for parts in fetch_streams(fake_gcs.url, node.name).values() for _, _, b in parts)
    for log in logs:
        for number, spans in enumerate(log.secrets):
            for start, end in spans:
                secret = bytes(log.generations[number][start:end])
                if secret in everything:
                    outcome.problems.append(f"a secret of {log.scheme} reached the bucket")


def _check_log(
    log: Log, shipped: dict[int, bytes], reported: dict[tuple[str, int], int], outcome: Outcome
) -> None:
    """Walk the written and the shipped generations together.

    A shipped generation must equal the next written one. Where the agent recorded a gap from byte N
    to an unknown end (its file was gone), that generation may end at N, and whole generations
    rotated out after it (which nobody could count) may be missing: their bytes are reported lost.
    """
    sid = source_id(str(log.path))
    outcome.generations += len(log.generations)
    outcome.bytes_written += sum(len(g) for g in log.generations)
    truth = 0
    for number in range(1, max(shipped, default=0) + 1):
        got = shipped.get(number, b"")
        lost_from = reported.get((sid, number))
        while truth < len(log.generations):
            written, spans = bytes(log.generations[truth]), log.secrets[truth]
            if compare(written, spans, got) is None:
                break
            kept = [s for s in spans if s[1] <= len(got)]
            if (
                lost_from is not None
                and len(got) == lost_from
                and compare(written[:lost_from], kept, got) is None
            ):
                outcome.bytes_reported_lost += len(written) - lost_from
                break
            if number > 1 and reported.get((sid, number - 1)) is not None and truth > 0:
                outcome.bytes_reported_lost += len(written)  # rotated out after a reported loss
                truth += 1
                continue
            outcome.bytes_lost_silently += max(0, len(written) - len(got))
            outcome.problems.append(
                f"{log.scheme} generation {number} (written {truth + 1}): {compare(written, spans, got)}"
            )
            break
        else:
            outcome.problems.append(f"{log.scheme}: generation {number} in the bucket was never written")
        truth += 1
    unshipped = [len(rest) for rest in log.generations[truth:] if rest]  # an empty one has nothing to lose
    if unshipped:
        outcome.bytes_lost_silently += sum(unshipped)
        outcome.problems.append(f"{log.scheme}: the last {len(unshipped)} written generations never shipped")


def all_landed(logs: list[Log], fake_gcs: Server, node: Node) -> bool:
    """Whether every log's newest generation in the bucket holds the newest written one's length.

    (The agent's numbers can lag the written ones: generations rotated out unseen cannot be counted.)
    """
    streams = fetch_streams(fake_gcs.url, node.name)
    for log in logs:
        sid = source_id(str(log.path))
        mine = [stream for source, stream in streams if source == sid]
        if not mine:
            return False
        parts = streams[(sid, max(mine))]
        if sum(end - start for start, end, _ in parts) != len(log.generations[-1]):
            return False
    return True


@dataclass(frozen=True)
class Plan:
    """How hard a run is."""

    kills: int
    seconds_between: tuple[float, float]
    keysvc_down_seconds: float
    rotate_every: int
    fault_rate: float = 0.3
    seed: int = 1


def run(plan: Plan, root: Path, fake_gcs: Server) -> Outcome:
    """One torture run under ``root``; returns its outcome (the caller asserts on it)."""
    emulator.create_buckets(fake_gcs.url, [BUCKET])
    front = CreateOnlyFront(fake_gcs.url, plan.fault_rate, plan.seed)
    keysvc = Keysvc(root / "keysvc", front.url).prepare().start()
    logs = make_logs(root / "logs")
    node = Node(root / "node", keysvc, f"torture-{plan.seed}", tuple(str(log.path) for log in logs))
    node.provision()
    outcome = Outcome()
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(logs, stop, plan.seed, plan.rotate_every), daemon=True)
    rng = random.Random(plan.seed)  # noqa: S311 - reproducible kill schedule, not crypto
    try:
        for kill in range(plan.kills):
            process = node.start(TOML)
            if kill == 0:  # let the first run bind each log's first generation, then write
                time.sleep(1.5)
                thread.start()
            if kill == plan.kills // 2:  # keysvc down while the agent runs
                keysvc.stop()
                time.sleep(plan.keysvc_down_seconds)
                keysvc.start()
            time.sleep(rng.uniform(*plan.seconds_between))
            outcome.peak_rss_mib = max(outcome.peak_rss_mib, peak_rss_mib(process.pid))
            node.kill9()
            outcome.kills += 1
            if rng.random() < 0.3:  # several rotations while the agent is down
                log = rng.choice(logs)
                with log.lock:
                    for _ in range(rng.randint(2, 3)):
                        log.write(b"written while the agent is down %d.%d\n" % (kill, log.rotations))
                        log.rotate()
    finally:
        stop.set()
        thread.join()
    process = node.start(TOML)
    deadline = time.monotonic() + 120
    while not all_landed(logs, fake_gcs, node) and time.monotonic() < deadline:
        outcome.peak_rss_mib = max(outcome.peak_rss_mib, peak_rss_mib(process.pid))
        time.sleep(0.5)
    outcome.peak_rss_mib = max(outcome.peak_rss_mib, peak_rss_mib(process.pid))
    if node.terminate() != 0:
        outcome.problems.append("the last agent did not exit 0 on SIGTERM")
    check(logs, fake_gcs, keysvc, node, out=root / "out", outcome=outcome)
    outcome.duplicate_puts = front.duplicates
    outcome.faults = front.counts
    for name, bodies in front.bodies.items():
        if len(bodies) > 1:
            outcome.problems.append(f"{name} was PUT with {len(bodies)} different bodies")
    keysvc.stop()
    front.close()
    return outcome
