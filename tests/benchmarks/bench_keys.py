"""Benchmark: keys minted/s and verifications/s through the key service on SQLite, on this machine.

Run: ``.venv/bin/python -m tests.benchmarks.bench_keys [--keys N] [--verifications N]``

Baselines measured in the same run, so the ratios say where the time goes: the raw cost of
``keyformat.key_hash`` (domain-separated SHA-256), of ``keyformat.parse`` (shape and CRC-32
checksum), of one Ed25519 signature (each audit append signs the record and the head), and of an
empty ``BEGIN IMMEDIATE``/``COMMIT`` on the same database. Then the exchange, once per key, and the
check of a grant presenting the session, against today's check presenting the key.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keysvc import logging_setup
from keysvc.core.clock import SystemClock
from keysvc.core.models import AddNode, Region, Scope
from keysvc.files.audit_signing import AuditSigner
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService
from keysvc.store import open_store
from keysvc.store.sqlite import SqliteStore
from keysvc.wire import keyformat, sessionformat


def rate(count: int, work: Callable[[int], object]) -> tuple[float, float]:
    """Run ``work(i)`` for i in range(count); return (operations per second, microseconds each)."""
    start = time.perf_counter()
    for i in range(count):
        work(i)
    elapsed = time.perf_counter() - start
    return count / elapsed, elapsed / count * 1e6


def line(name: str, result: tuple[float, float]) -> None:
    """Print one figure."""
    print(f"  {name:<44} {result[0]:>12,.0f} /s   {result[1]:>9.1f} µs each")


class _NoUrls:
    """The URL signer port, unused here: this benchmark authenticates without granting."""

    def sign_put(self, **_: object) -> str:
        """Never called by authenticate."""
        raise AssertionError("authenticate signs nothing")

    def check_ready(self) -> None:
        """Always ready."""


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--verifications", type=int, default=5000)
    parser.add_argument("--raw", type=int, default=200_000)
    args = parser.parse_args()
    logging_setup.configure("warning")

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        signer = AuditSigner.generate()
        regions = {"eu": Region(name="eu", bucket="nodelogs-eu")}
        service = KeyService(store, signer, SystemClock(), regions=regions)
        ingest = IngestService(store, service.audit, SystemClock(), signer=_NoUrls(), regions=regions)
        print(f"keysvc benchmark on {os.cpu_count()} CPU(s), SQLite WAL in {tmp}")

        key = keyformat.mint().key
        raw_hash = rate(args.raw, lambda _: keyformat.key_hash(key))
        raw_parse = rate(args.raw, lambda _: keyformat.parse(key))
        raw_mint = rate(args.raw // 4, lambda _: keyformat.mint())
        digest = keyformat.key_hash(key)
        raw_sign = rate(args.raw // 20, lambda _: signer.sign(digest))
        sqlite_store = store if isinstance(store, SqliteStore) else None

        def empty_tx(_: int) -> None:
            with store.transaction():
                pass

        raw_tx = rate(args.keys, empty_tx)

        now = SystemClock().now()
        issued: list[str] = []

        def mint(i: int) -> None:
            result = service.add_node(
                AddNode(f"c{i % 10}", f"node-{i}", "i-0123456789abcdef0", "eu", f"op-{i}", now), actor="bench"
            )
            issued.append(result.key)

        minted = rate(args.keys, mint)
        wanted = [Scope(f"c{i % 10}", f"node-{i}", "eu") for i in range(args.keys)]

        def verify(i: int) -> None:
            j = i % len(issued)
            ingest.authenticate(issued[j], wanted=wanted[j], source="10.0.0.1")

        verified = rate(args.verifications, verify)
        verified_warm = rate(args.verifications, verify)  # every (key, source) seen: no first-use audits
        sessions: list[str] = []

        def exchange(i: int) -> None:
            sessions.append(ingest.exchange(issued[i], sessionformat.new_nonce(), source="10.0.0.1").session)

        exchanged = rate(len(issued), exchange)

        def verify_session(i: int) -> None:
            j = i % len(sessions)
            ingest.authenticate(sessions[j], wanted=None, source="10.0.0.1")

        verified_session = rate(args.verifications, verify_session)
        db_size = Path(tmp, "bench.db").stat().st_size + Path(tmp, "bench.db-wal").stat().st_size
        service.close()
        assert sqlite_store is None or sqlite_store.path.exists()

    print("baselines:")
    line("keyformat.key_hash (SHA-256)", raw_hash)
    line("keyformat.parse (shape + CRC-32)", raw_parse)
    line("keyformat.mint (secrets + base32 + CRC)", raw_mint)
    line("Ed25519 sign", raw_sign)
    line("empty BEGIN IMMEDIATE/COMMIT", raw_tx)
    print("through the service (SQLite):")
    line("add_node (mint + 1 transaction + audit)", minted)
    line("authenticate_ingest (verify + count use)", verified)
    line("authenticate_ingest again (no first-use audit)", verified_warm)
    line("exchange (key + nonce -> session, audited)", exchanged)
    line("authenticate with the session (grant check)", verified_session)
    print("ratios:")
    print(
        f"  add_node costs {minted[1] / raw_hash[1]:,.0f}x a key_hash, "
        f"{minted[1] / raw_sign[1]:.1f}x a signature, {minted[1] / raw_tx[1]:.1f}x an empty transaction"
    )
    print(
        f"  authenticate_ingest costs {verified[1] / raw_hash[1]:,.0f}x a key_hash, "
        f"{verified[1] / raw_tx[1]:.1f}x an empty transaction"
    )
    print(f"  hashing is {raw_hash[1] / verified[1] * 100:.2f}% of a verification")
    print(
        f"  an exchange costs {exchanged[1] / verified_warm[1]:.1f}x a key check; a session check costs "
        f"{verified_session[1] / verified_warm[1]:.2f}x a key check (both without first-use audits)"
    )
    print(f"  database + WAL after the run: {db_size / 1024:.0f} KiB for {args.keys} keys")


if __name__ == "__main__":
    main()
