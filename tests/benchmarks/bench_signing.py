"""Benchmark: what a grant costs keysvc with the key-file signer versus IAM signBlob.

Run: ``flock /tmp/nodelogs-bench.lock .venv/bin/python -m tests.benchmarks.bench_signing [--grants N]``

The signBlob side talks to tests/iam_server.py in a *separate process* over loopback, so keysvc's
own CPU (building the canonical request, one HTTP round trip per URL, JSON and base64) is measured
apart from the stand-in's RSA signature. Real signBlob adds Google's network round trip (typically
tens of milliseconds) to the wall time, not to keysvc's CPU. Grants of 1 and 8 URLs go through
:class:`keysvc.service.ingest.IngestService`'s signing path (8 URLs in parallel for signBlob).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from keysvc.gcs.iam_signing import IamClient, IamUrlSigner
from keysvc.gcs.url_signing import GcsUrlSigner, new_service_account_file
from keysvc.service.ports import UrlSigner

HEADERS = {"content-type": "application/gzip", "x-goog-if-generation-match": "0"}
SERVER = (
    "import sys, time; from tests.iam_server import IamServer; s = IamServer(); "
    "print(s.url, flush=True); sys.stdin.read()"
)


def grant_cost(signer: UrlSigner, urls: int, grants: int, parallel: bool) -> tuple[float, float]:
    """(wall ms, keysvc CPU ms) per grant of ``urls`` URLs."""
    pool = ThreadPoolExecutor(8) if parallel else None

    def one(i: int) -> str:
        return signer.sign_put(
            bucket="nodelogs-eu", object_name=f"p/c/n/s/g000001/{i:016d}.gz", headers=HEADERS,
            signed_at=int(time.time()), expires_in=300,
        )  # fmt: skip

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(grants):
        list(pool.map(one, range(urls))) if pool else [one(i) for i in range(urls)]
    return (time.perf_counter() - wall) / grants * 1000, (time.process_time() - cpu) / grants * 1000


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        key_file = Path(scratch) / "sa.json"
        new_service_account_file(key_file, email="bench@nodelogs.iam.gserviceaccount.com")
        key_signer = GcsUrlSigner(key_file, "https://storage.googleapis.com")
        key_signer.check_ready()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2], env=dict(os.environ),
        )  # fmt: skip
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            iam = IamUrlSigner(
                IamClient(metadata_endpoint=url, iam_endpoint=url), "https://storage.googleapis.com"
            )
            iam.check_ready()
            print(f"grant cost per grant, {args.grants} grants each (wall ms / keysvc CPU ms):")
            for urls in (1, 8):
                k_wall, k_cpu = grant_cost(key_signer, urls, args.grants, parallel=False)
                i_wall, i_cpu = grant_cost(iam, urls, args.grants, parallel=urls > 1)
                print(
                    f"  {urls} URL(s): key file {k_wall:6.2f} / {k_cpu:6.2f}   "
                    f"signBlob (loopback) {i_wall:6.2f} / {i_cpu:6.2f}   "
                    f"token fetches {iam.client.token_fetches}"
                )
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
