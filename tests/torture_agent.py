"""The long agent torture run, as a script (the suite runs a short one: test_agent_torture.py).

Run from the repository root, alone on the machine (it takes a few minutes)::

    flock /tmp/nodelogs-bench.lock .venv/bin/python -m tests.torture_agent [--kills 120] [--seed 1]

It prints the figures (bytes written, lost silently, lost and reported; duplicate PUTs per kill;
the agent's peak RSS) and exits 1 if anything was lost silently or any other check failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.agent.torture import Plan, run
from tests.servers import start_fake_gcs


def main() -> int:
    """Run the long torture plan and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keysvc-down", type=float, default=20.0)
    parser.add_argument("--rotate-every", type=int, default=1200, help="writes per rotation, per log (about)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="torture-agent-"))
    gcs = start_fake_gcs()
    try:
        plan = Plan(
            kills=args.kills,
            seconds_between=(0.2, 2.0),
            keysvc_down_seconds=args.keysvc_down,
            rotate_every=args.rotate_every,
            seed=args.seed,
        )
        outcome = run(plan, work, gcs)
    finally:
        gcs.close()
    print(f"work directory: {work}")
    print(
        f"kills: {outcome.kills}; generations: {outcome.generations}; bytes written: {outcome.bytes_written}"
    )
    print(f"bytes lost silently: {outcome.bytes_lost_silently}")
    print(f"bytes lost and reported by keysvc logs get: {outcome.bytes_reported_lost}")
    print(
        f"duplicate PUTs reaching the bucket: {outcome.duplicate_puts} "
        f"= {outcome.duplicate_puts / max(1, outcome.kills):.2f} per kill"
    )
    print(f"agent peak RSS across the run: {outcome.peak_rss_mib:.1f} MiB")
    print(f"faults injected: {dict(outcome.faults)}")
    for problem in outcome.problems:
        print(f"PROBLEM: {problem}")
    if not args.keep and not outcome.problems:
        import shutil  # noqa: PLC0415 - only for the cleanup

        shutil.rmtree(work, ignore_errors=True)
    return 1 if outcome.problems or outcome.bytes_lost_silently else 0


if __name__ == "__main__":
    sys.exit(main())
