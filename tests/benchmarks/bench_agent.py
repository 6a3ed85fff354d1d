"""Benchmark: ship a 200 MiB boot log through a real keysvc to fake-gcs-server with the real agent.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.bench_agent [--mib 200] [--gzip-level 6] [--latency-samples 10]

Prints the agent's throughput (MiB/s), CPU seconds per MiB, peak RSS, idle CPU while nothing is
written, and the latency from a line being written to its object landing (the agent's position file
advances only after the bucket acknowledged the PUT). In the same run it times a baseline doing the
minimum of the same work, ``gzip -1`` of the same bytes plus one PUT of the result to the same
emulator, and reports the agent's throughput as a ratio of it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from agent.chunking import source_id
from agent.keyfile import NodeKey
from agent.proxyconfig import ProxyConfig
from agent.transport import Transport
from agent.uploader import Grant, KeysvcClient
from keysvc.devtools import emulator
from tests.agent.stack import BUCKET, CLUSTER, Keysvc, Node, read_source
from tests.servers import start_fake_gcs

MIB = 1024 * 1024
TICK = 100  # clock ticks per second for /proc/<pid>/stat (os.sysconf("SC_CLK_TCK") on Linux)

_UNITS = ("kubelet", "containerd", "systemd-networkd", "cloud-init", "sshd", "chronyd", "kernel")
_MESSAGES = (
    "Started {unit} service.",
    'I1128 08:{m:02d}:{s:02d}.{us:06d}    {pid} kubelet.go:{n}] "Syncing pod" pod="kube-system/coredns-{h}"',
    "cloud-init[{pid}]: Cloud-init v. 23.1.2 running 'modules:config' at Sat, 28 Nov 2026 08:{m:02d}:{s:02d}",
    'time="2026-11-28T08:{m:02d}:{s:02d}Z" level=info msg="pulling image" image="k8s.io/pause:3.{n}"',
    "eth0: Gained carrier; DHCPv4 address 10.0.{n}.{pid} via 10.0.0.1",
    "[{n}.{us:06d}] EXT4-fs (nvme0n1p1): re-mounted. Opts: (null). Quota mode: none.",
    "Reached target {unit}.target - Multi-User System.",
)


def boot_log(path: Path, size: int, seed: int = 1) -> None:
    """Write at least ``size`` bytes of realistic boot-log text, ending with a whole line."""
    rng = random.Random(seed)  # noqa: S311 - reproducible text, not crypto
    lines = []
    for i in range(20000):
        unit = rng.choice(_UNITS)
        message = rng.choice(_MESSAGES).format(
            unit=unit,
            m=i // 600 % 60,
            s=i // 10 % 60,
            us=rng.randrange(10**6),
            pid=rng.randrange(1, 65535),
            n=rng.randrange(1, 999),
            h=f"{rng.getrandbits(40):010x}",
        )
        lines.append(
            f"Nov 28 08:{i // 600 % 60:02d}:{i // 10 % 60:02d} ip-10-0-0-12 {unit}[{i}]: {message}\n"
        )
    block = "".join(lines).encode()
    with path.open("wb") as handle:
        written = 0
        while written < size:
            piece = block[: size - written]
            piece = block[: piece.rfind(b"\n") + 1] if len(piece) < len(block) else piece
            piece = piece or block[: block.find(b"\n") + 1]
            handle.write(piece)
            written += len(piece)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_peak_rss_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def acked(node: Node, path: Path) -> int:
    """The offset the agent has durably recorded as acknowledged by the bucket."""
    position = node.root / "state" / "positions" / f"{source_id(str(path))}.json"
    try:
        return int(json.loads(position.read_bytes())["offset"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def signed_put(node: Node, size: int) -> Grant:
    """One signed PUT URL from keysvc for the baseline object (fake-gcs-server takes XML PUTs on those)."""
    key = NodeKey(node.key_id, node.key)
    transport = Transport(ProxyConfig.from_env({}))
    client = KeysvcClient(
        transport,
        node.keysvc.url,
        key,
        cluster=CLUSTER,
        node=node.name,
        region="local",
        monotonic=time.monotonic,
    )
    name = f"baseline-00000000/g000001/{0:016d}-{size:016d}.gz"
    grant = client.grant([name]).grants[name]
    transport.close()
    return grant


def baseline(path: Path, grant: Grant) -> tuple[float, int]:
    """Time `gzip -1` of the file plus a single PUT of the result to the emulator; return (seconds, bytes)."""
    started = time.perf_counter()
    compressed = subprocess.run(["gzip", "-1", "-c", str(path)], capture_output=True, check=True).stdout
    parts = urlsplit(grant.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    conn.request("PUT", f"{parts.path}?{parts.query}", body=compressed, headers=dict(grant.headers))
    response = conn.getresponse()
    response.read()
    conn.close()
    elapsed = time.perf_counter() - started
    if response.status not in (200, 201):
        raise RuntimeError(f"baseline PUT answered {response.status}")
    return elapsed, len(compressed)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument(
        "--gzip-level", type=int, default=None, help="agent gzip level (default: its default)"
    )
    parser.add_argument("--latency-samples", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    gcs = start_fake_gcs()
    keysvc = None
    try:
        emulator.create_buckets(gcs.url, [BUCKET])
        keysvc = Keysvc(work / "keysvc", gcs.url).prepare().start()
        log = work / "logs" / "boot.log"
        log.parent.mkdir()
        boot_log(log, args.mib * MIB)
        size = log.stat().st_size
        node = Node(work / "node", keysvc, "bench-node", (str(log),)).provision()
        base_seconds, base_bytes = baseline(log, signed_put(node, size))
        base_rate = args.mib / base_seconds
        toml = f"gzip_level = {args.gzip_level}\n" if args.gzip_level is not None else ""
        started = time.perf_counter()
        process = node.start(toml)
        while acked(node, log) < size:
            if process.poll() is not None:
                raise RuntimeError(f"agent exited {process.returncode}; see {node.root / 'agent.log'}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu = proc_cpu(process.pid)
        rate = args.mib / elapsed

        idle_before = proc_cpu(process.pid)
        time.sleep(args.idle_seconds)
        idle_cpu = (proc_cpu(process.pid) - idle_before) / args.idle_seconds

        latencies = []
        for i in range(args.latency_samples):
            line = f"Nov 28 09:00:{i:02d} ip-10-0-0-12 kubelet[1]: latency probe {i}\n".encode()
            with log.open("ab") as handle:
                handle.write(line)
                handle.flush()
                written_at = time.perf_counter()
            size += len(line)
            while acked(node, log) < size:
                time.sleep(0.002)
            latencies.append(time.perf_counter() - written_at)
            time.sleep(0.3)
        peak = proc_peak_rss_mib(process.pid)
        assert node.terminate() == 0
        shipped = read_source(gcs.url, node.name, str(log))
        assert shipped == {1: log.read_bytes()}, "bucket content differs from the source"

        print(f"source: {args.mib} MiB of boot-log text; gzip -1 output {base_bytes / MIB:.1f} MiB")
        print(f"baseline (gzip -1 + one PUT): {base_seconds:.2f} s = {base_rate:.1f} MiB/s")
        print(f"agent: {elapsed:.2f} s = {rate:.1f} MiB/s  (ratio to baseline {rate / base_rate:.2f})")
        print(f"agent CPU: {cpu:.2f} s total = {cpu / args.mib * 1000:.1f} ms per MiB")
        print(f"agent peak RSS: {peak:.1f} MiB")
        print(f"agent idle CPU: {idle_cpu * 100:.2f} % of one core over {args.idle_seconds:.0f} s")
        median, worst = statistics.median(latencies), max(latencies)
        print(
            f"write-to-landed latency over {len(latencies)} lines: median {median:.2f} s, max {worst:.2f} s"
        )
        print("  (a line waits up to chunk_seconds, default 2 s, before its chunk is cut)")
        print("bucket content verified byte for byte")
    finally:
        if keysvc is not None:
            keysvc.stop()
        gcs.close()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
