"""``keysvc logs get``: read a node's shipped logs back from the bucket, byte for byte.

Lists the node's objects, decompresses them and writes each source stream's bytes in offset order:
to stdout when there is one source (or ``--source`` picks one; its streams, one per rotation or
truncation, follow each other in generation order), or into ``DIR/<source>/<stream>.log`` with
``--output DIR``. Every gap, overlap or object of the wrong length is reported on stderr and makes
the exit status 1, and so is every gap the agent recorded and every hole in a source's generation
sequence (a missing generation, or one shorter than its successor's record says; see
:func:`keysvc.core.logreader.check_sequence`). A copytruncate boundary is noted on stderr.
``--follow`` keeps listing every ``--interval`` seconds and writes new chunks as they land, like
``kubectl logs -f`` (holes are checked only without it); it waits ``--gap-wait`` seconds for a
missing chunk (chunks of one batch may land out of order) before reporting the gap and moving on.

The bucket and prefix come from the node's region: ``--region``, else the region of the node's
keys in the key store, else the only configured region.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from keysvc.config import Settings
from keysvc.core.ids import cluster_id, node_id
from keysvc.core.logreader import NodeLogs, Piece, Problem, StreamCursor, check_sequence, decompress_chunk
from keysvc.core.models import Region
from keysvc.errors import ConfigError, InvalidInput, NotFound
from keysvc.gcs.bucket_reader import GcsBucketReader, ListedChunk
from keysvc.runtime import load_settings, open_service
from keysvc.wire.objectnames import MarkerName, parse_marker


def register(subparsers: Any) -> None:
    """Add the ``logs`` command group."""
    logs = subparsers.add_parser("logs", help="read a node's shipped logs back from the bucket")
    sub = logs.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    get = sub.add_parser(
        "get",
        help="write a node's log bytes in order; report gaps and overlaps",
        description="Reassemble a node's logs from its chunk objects. Gaps and overlaps are reported "
        "on stderr and make the exit status 1.",
    )
    get.add_argument("--cluster", required=True, help="cluster id")
    get.add_argument("--node", required=True, help="node name")
    get.add_argument("--source", help="only this source (its object-name form, e.g. var-log-syslog-1a2b3c4d)")
    get.add_argument("--region", help="the node's region (default: from its keys in the key store)")
    get.add_argument("--output", type=Path, help="write DIR/<source>/<stream>.log instead of stdout")
    get.add_argument("--follow", "-f", action="store_true", help="keep printing new chunks as they land")
    get.add_argument("--interval", type=float, default=1.0, help="seconds between listings with --follow")
    get.add_argument(
        "--gap-wait", type=float, default=10.0, help="seconds to wait for a missing chunk with --follow"
    )
    get.set_defaults(handler=run_get)


def run_get(args: argparse.Namespace) -> int:
    """Read the node's logs; 0 when every stream tiles exactly, 1 when a problem was reported."""
    cluster, node = cluster_id(args.cluster), node_id(args.node)
    settings = load_settings(args.config, args.state_dir)
    region = _region(settings, args.region, cluster, node)
    reader = GcsBucketReader.open(settings, region, cluster, node)
    with _Sink(args.output) as sink:
        copier = _Copier(reader, sink, args.source)
        if not args.follow:
            copier.poll(now=0.0, gap_wait=0.0)
            copier.check_sequence(final=True)
            if not copier.seen_any:
                raise NotFound(f"no log objects under {reader.location}")
        else:
            while True:
                copier.poll(now=time.monotonic(), gap_wait=args.gap_wait)
                copier.check_sequence(final=False)
                time.sleep(args.interval)
    if copier.problems:
        sys.stderr.write(f"keysvc logs: {copier.problems} problem(s) in {reader.location}\n")
        return 1
    return 0


class _Copier:
    """Lists, reassembles and writes; counts the problems it reported."""

    def __init__(self, reader: GcsBucketReader, sink: _Sink, source: str | None) -> None:
        self._reader = reader
        self._sink = sink
        self._source = source
        self._logs = NodeLogs()
        self._names: dict[tuple[str, int, int], str] = {}
        self._strays: set[str] = set()
        self._markers: set[MarkerName] = set()
        self._said: set[str] = set()
        self.problems = 0
        self.seen_any = False

    def poll(self, now: float, gap_wait: float) -> None:
        """List once and write everything that is ready."""
        listed, strays = self._reader.list_chunks()
        for stray in sorted(set(strays) - self._strays):
            try:
                marker = parse_marker(stray[len(self._reader.prefix) :])
            except InvalidInput:
                self._report_text(f"NOT A CHUNK gs://{self._reader.bucket}/{stray}: ignored")
                continue
            if self._source is None or marker.source == self._source:
                self._markers.add(marker)
        self._strays.update(strays)
        wanted = [item for item in listed if self._source is None or item.chunk.source == self._source]
        self.seen_any = self.seen_any or bool(self._markers)
        self._remember(wanted)
        self._logs.add(item.chunk for item in wanted)
        cursors = self._logs.streams(self._source)
        self.seen_any = self.seen_any or bool(cursors)
        self._sink.check(cursors)
        for cursor in cursors:
            pieces, problems = cursor.ready(now, gap_wait)
            for problem in problems:
                self._report(problem)
            for piece in pieces:
                self._write(cursor, piece)

    def check_sequence(self, *, final: bool) -> None:
        """Report recorded gaps (at once) and holes in the generation sequence (when ``final``)."""
        ends = {(cursor.source, cursor.stream): cursor.offset for cursor in self._logs.streams(self._source)}
        problems, notes = check_sequence(self._markers, ends)
        for problem in problems:
            if final or problem.kind == "recorded-gap":
                self._say(problem.describe(), count=True)
        for note in notes:
            self._say(f"NOTE {note}", count=False)

    def _say(self, text: str, *, count: bool) -> None:
        if text in self._said:
            return
        self._said.add(text)
        if count:
            self._report_text(text)
        else:
            self._sink.flush()
            sys.stderr.write(f"keysvc logs: {text}\n")

    def _remember(self, listed: list[ListedChunk]) -> None:
        for item in listed:
            chunk = item.chunk
            self._names[(f"{chunk.source}/{chunk.stream}", chunk.start, chunk.end)] = item.object_name

    def _write(self, cursor: StreamCursor, piece: Piece) -> None:
        chunk = piece.chunk
        name = self._names[(f"{chunk.source}/{chunk.stream}", chunk.start, chunk.end)]
        body, problem = decompress_chunk(chunk, self._reader.read(name))
        if problem is not None:
            self._report(problem)
        self._sink.write(cursor, body[piece.skip :])

    def _report(self, problem: Problem) -> None:
        self._report_text(problem.describe())

    def _report_text(self, text: str) -> None:
        self.problems += 1
        self._sink.flush()
        sys.stderr.write(f"keysvc logs: {text}\n")
        sys.stderr.flush()


class _Sink:
    """Where bytes go: stdout for one source, or one file per stream under a directory."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._files: dict[tuple[str, str], BinaryIO] = {}
        self._stdout = sys.stdout.buffer

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        for handle in self._files.values():
            handle.close()

    def check(self, cursors: list[StreamCursor]) -> None:
        """Refuse to interleave several sources on stdout."""
        sources = sorted({cursor.source for cursor in cursors})
        if self._directory is None and len(sources) > 1:
            raise InvalidInput(
                f"the node has {len(sources)} sources ({', '.join(sources)}): pass --source or --output DIR"
            )

    def write(self, cursor: StreamCursor, data: bytes) -> None:
        """Append a stream's next bytes."""
        if self._directory is None:
            self._stdout.write(data)
            self._stdout.flush()
            return
        key = (cursor.source, cursor.stream)
        handle = self._files.get(key)
        if handle is None:
            folder = self._directory / cursor.source
            folder.mkdir(parents=True, exist_ok=True)
            handle = self._files[key] = (folder / f"{cursor.stream}.log").open("wb")
        handle.write(data)
        handle.flush()

    def flush(self) -> None:
        """Flush stdout so messages on stderr come after the bytes they follow."""
        self._stdout.flush()


def _region(settings: Settings, name: str | None, cluster: str, node: str) -> Region:
    if name is not None:
        if name not in settings.regions:
            raise ConfigError(
                f"region {name!r} is not configured; known: {', '.join(sorted(settings.regions))}"
            )
        return settings.regions[name]
    service = open_service(settings)
    try:
        records = service.list_keys(cluster=cluster, node=node)
    finally:
        service.close()
    if records:
        latest = max(records, key=lambda record: record.issued_at)
        if latest.region not in settings.regions:
            raise ConfigError(f"the node's region {latest.region!r} is not configured")
        return settings.regions[latest.region]
    if len(settings.regions) == 1:
        return next(iter(settings.regions.values()))
    raise NotFound(f"no keys for {cluster}/{node} in the key store: pass --region")
