"""``keysvc audit list|show|verify|export|public-key``: the signed audit chain, for operators and SIEMs.

``verify`` is modelled on ``aws cloudtrail validate-logs``: it exits 0 when the chain is intact and
otherwise exits 1 naming the first bad record and what is wrong with it. ``export --format jsonl``
writes a header line (format, public keys, signed head) and then one line per record, so a verifier
holding the exported file and a pinned public key can check it offline with ``verify --file``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keysvc.commands.keys import service_for
from keysvc.commands.tables import audit_json, emit, emit_json, iso, parse_time, table
from keysvc.core import auditchain
from keysvc.core.auditchain import ChainHead, VerifyReport
from keysvc.core.clock import SystemClock
from keysvc.core.models import AuditRecord, EventType
from keysvc.errors import AuditIntegrityError, InvalidInput, NotFound
from keysvc.files.private_files import write_private

EXPORT_FORMAT = "nodelogs-audit-export"
EXPORT_VERSION = 1
AUDIT_HEADERS = ("SEQ", "TIME", "EVENT", "KEY ID", "CLUSTER", "NODE", "ACTOR", "SOURCE", "REASON")


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")


def register(subparsers: Any) -> None:
    """Add the ``audit`` command group."""
    audit = subparsers.add_parser("audit", help="list, show, verify and export the signed audit chain")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="list audit records")
    listing.add_argument("--since", help="epoch seconds, ISO 8601, or an age such as 30m, 2h, 1d")
    listing.add_argument("--until", help="epoch seconds, ISO 8601, or an age such as 30m, 2h, 1d")
    listing.add_argument("--cluster")
    listing.add_argument("--node")
    listing.add_argument("--event", choices=[e.value for e in EventType])
    listing.add_argument("--key-id")
    listing.add_argument("--limit", type=int, help="only the most recent N records")
    _output(listing)
    listing.set_defaults(handler=run_list)

    show = sub.add_parser("show", help="a key's whole life as a timeline")
    show.add_argument("key_id", metavar="KEY_ID")
    _output(show)
    show.set_defaults(handler=run_show)

    verify = sub.add_parser("verify", help="check the hash chain and every signature")
    verify.add_argument("--file", type=Path, help="verify a JSONL export offline instead of the database")
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        default=None,
        help="trust only this PEM public key (repeatable); default: the service's own key, or the export's",
    )
    _output(verify)
    verify.set_defaults(handler=run_verify)

    export = sub.add_parser("export", help="write the chain, its signed head and public keys for a SIEM")
    export.add_argument("--format", choices=("jsonl",), default="jsonl")
    export.add_argument("--out", type=Path, help="write to this file (atomically) instead of stdout")
    export.set_defaults(handler=run_export)

    public_key = sub.add_parser("public-key", help="print the audit signing public key (PEM)")
    public_key.set_defaults(handler=run_public_key)


def record_row(record: AuditRecord) -> list[str]:
    """A record as a row under :data:`AUDIT_HEADERS`."""
    event = record.event
    return [
        str(record.seq),
        iso(event.at),
        event.event.value,
        event.key_id or "-",
        event.cluster or "-",
        event.node or "-",
        event.actor or "-",
        event.source or "-",
        event.reason or "-",
    ]


def run_list(args: argparse.Namespace) -> int:
    """List audit records in order."""
    now = SystemClock().now()
    service = service_for(args)
    try:
        records = service.audit.records(
            since=parse_time(args.since, now) if args.since else None,
            until=parse_time(args.until, now) if args.until else None,
            cluster=args.cluster,
            node=args.node,
            event=EventType(args.event) if args.event else None,
            key_id=args.key_id,
            limit=args.limit,
        )
    finally:
        service.close()
    if args.output == "json":
        emit_json([audit_json(r) for r in records])
    else:
        emit(table(AUDIT_HEADERS, [record_row(r) for r in records]))
    return 0


def describe(record: AuditRecord) -> str:
    """One line saying what happened, by whom or from where."""
    event = record.event
    parts: list[str] = []
    if event.actor:
        parts.append(f"by {event.actor}")
    if event.source:
        parts.append(f"from {event.source}")
    if event.reason:
        parts.append(f"reason {event.reason}")
    if event.event is EventType.ISSUED:
        parts.append(f"operation {event.detail.get('operation_id')}")
        if event.detail.get("retry"):
            parts.append("(retry)")
    if event.event is EventType.USED:
        parts.append(f"use #{event.detail.get('uses')}")
    if event.event is EventType.BOUND:
        parts.append(f"instance {event.instance}")
    return " ".join(parts)


def run_show(args: argparse.Namespace) -> int:
    """Print a key's record and every audit record about it, oldest first."""
    service = service_for(args)
    try:
        records = service.audit.records(key_id=args.key_id)
        try:
            key = service.get_key(args.key_id)
        except NotFound:
            if not records:
                raise
            key = None
    finally:
        service.close()
    if args.output == "json":
        emit_json(
            {
                "key_id": args.key_id,
                "state": key.state.value if key else None,
                "exchanges": key.exchanges if key else None,
                "replays": key.replays if key else None,
                "events": [audit_json(r) for r in records],
            }
        )
        return 0
    if key is not None:
        emit(
            f"key {key.key_id}  cluster {key.cluster}  node {key.node}  instance {key.instance or '-'}  "
            f"region {key.region}  state {key.state.value}  uses {key.uses}"
        )
        session = "held" if key.session_hash is not None else ("ended" if key.exchanged else "none")
        emit(
            f"  valid {iso(key.started_at)} .. {iso(key.expires_at)}  exchanged {iso(key.exchanged_at)} "
            f"({key.exchanges}x)  session {session}  replays {key.replays}"
        )
    for record in records:
        emit(f"{iso(record.event.at)}  #{record.seq:<6} {record.event.event.value:<9} {describe(record)}")
    return 0


def _load_export(path: Path) -> tuple[list[AuditRecord], ChainHead | None, dict[str, str]]:
    """Read a JSONL export: the header line, then records."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(f"cannot read export {path}: {exc.strerror}") from exc
    if not lines:
        raise AuditIntegrityError("the export is empty: no header line")
    try:
        header = json.loads(lines[0])
        body = [json.loads(line) for line in lines[1:] if line.strip()]
    except json.JSONDecodeError as exc:
        raise AuditIntegrityError(f"the export is not JSON lines (line {exc.lineno})") from exc
    if header.get("type") != EXPORT_FORMAT or header.get("version") != EXPORT_VERSION:
        raise AuditIntegrityError(f"not a {EXPORT_FORMAT} v{EXPORT_VERSION} file")
    head = auditchain.head_from_json(header["head"]) if header.get("head") else None
    records = [auditchain.record_from_json(item) for item in body]
    return records, head, dict(header.get("public_keys", {}))


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain (database or export); exit 1 naming the first bad record."""
    pinned = [p.read_text(encoding="ascii") for p in args.public_key] if args.public_key else None
    if args.file is not None:
        records, head, exported = _load_export(args.file)
        if pinned is None:
            sys.stderr.write(
                "keysvc: trusting the public keys inside the export; pin one with --public-key\n"
            )
        pems = pinned if pinned is not None else list(exported.values())
        keys = [auditchain.load_public_key(pem) for pem in pems]
        trusted = {auditchain.fingerprint(key): key for key in keys}
        report = auditchain.verify_chain(records, head, trusted).raise_for_problem()
    else:
        service = service_for(args)
        try:
            report = service.audit.verify(public_keys=pinned)
        finally:
            service.close()
    _print_report(report, args.output)
    return 0


def _print_report(report: VerifyReport, output: str) -> None:
    if output == "json":
        emit_json(
            {
                "ok": report.ok,
                "records": report.records,
                "head_seq": report.head_seq,
                "signers": list(report.signers),
            }
        )
    else:
        signers = ", ".join(report.signers) or "-"
        emit(
            f"audit chain OK: {report.records} records, signed head at record {report.head_seq}, "
            f"signers {signers}"
        )


def export_lines(
    records: list[AuditRecord], head: ChainHead | None, public_keys: dict[str, str]
) -> Iterator[str]:
    """The JSONL export: a header with what a verifier needs, then one record per line."""
    header = {
        "type": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": iso(SystemClock().now()),
        "records": len(records),
        "head": auditchain.head_to_json(head) if head is not None else None,
        "public_keys": public_keys,
    }
    yield json.dumps(header, sort_keys=True)
    for record in records:
        yield json.dumps({"type": "record", **auditchain.record_to_json(record)}, sort_keys=True)


def run_export(args: argparse.Namespace) -> int:
    """Write the export to stdout or, atomically, to ``--out``."""
    service = service_for(args)
    try:
        records, head = service.audit.snapshot()
        public_keys = service.audit.public_keys()
    finally:
        service.close()
    text = "".join(line + "\n" for line in export_lines(records, head, public_keys))
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_private(args.out, text.encode("utf-8"))
        sys.stderr.write(f"keysvc: exported {len(records)} records to {args.out}\n")
    return 0


def run_public_key(args: argparse.Namespace) -> int:
    """Print the public half of the audit signing key."""
    service = service_for(args)
    try:
        keys = service.audit.public_keys()
    finally:
        service.close()
    for pem in keys.values():
        sys.stdout.write(pem)
    return 0
