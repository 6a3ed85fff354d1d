"""Staging a source's next objects: cut, redact in context, gzip, write durably, and name them in an intent.

For one source, a batch is its pending markers (generation and gap records, see
:mod:`keysvc.wire.objectnames`) followed by up to ``chunks_per_batch`` chunks::

    read block -> cut -> redact in context -> gzip -> stage (fsync) ... -> intent (atomic)

Reading and redacting the next chunk overlaps with gzip and the fsync of the previous one, on a
single compressor thread (zlib, sha256 and fsync release the GIL); at most two chunks are in memory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from agent import chunking, redaction
from agent.checkpoint import Intent, StagedChunk, StateStore
from agent.config import AgentConfig
from agent.identity import EMPTY_SHA256, tail_fingerprint
from agent.sources import FileTail
from keysvc.wire import parse_marker


def marker_body(suffix: str) -> bytes:
    """The body of a marker object: its name's facts as canonical JSON (readers need only the name)."""
    marker = parse_marker(suffix)
    fields = {
        "kind": marker.kind,
        "source": marker.source,
        "stream": marker.stream,
        "previous": marker.previous,
        "length": marker.length,
        "copytruncated": marker.copytruncated,
        "start": marker.start,
        "end": marker.end,
        "reason": marker.reason,
        "version": 1,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Prepared:
    """Objects staged durably for one generation but not yet named in an intent."""

    generation: int
    dev: int
    ino: int
    chunks: tuple[StagedChunk, ...]
    end: int
    fp: tuple[int, str]


#: Threads that gzip and stage chunks while the main thread reads and redacts the next one.
COMPRESSORS = 2


class Stager:
    """Turns a tail's pending bytes into durably staged objects and an intent."""

    def __init__(
        self,
        config: AgentConfig,
        store: StateStore,
        own_key: bytes,
        monotonic: Callable[[], float],
    ) -> None:
        self.config = config
        self.store = store
        self.own_key = own_key
        self.monotonic = monotonic
        self.policy = chunking.CutPolicy(
            config.chunk_bytes, config.chunk_seconds, config.partial_line_seconds
        )
        self._compressor = ThreadPoolExecutor(max_workers=COMPRESSORS, thread_name_prefix="gzip")

    def close(self) -> None:
        """Stop the compressor thread."""
        self._compressor.shutdown(wait=True)

    def _markers(self, tail: FileTail, generation: int) -> list[StagedChunk]:
        staged = []
        for suffix in tail.markers:
            label = "." + suffix.rsplit("/", 1)[1]
            name, digest = self.store.stage(
                tail.source_id, generation, 0, 0, marker_body(suffix), label=label
            )
            staged.append(StagedChunk(0, 0, suffix, name, digest, 0, EMPTY_SHA256))
        return staged

    def stage(self, tail: FileTail, *, final: bool) -> Intent | None:
        """Stage the tail's markers and next chunks and save their intent; ``None`` when nothing is due."""
        prepared = self.prepare(tail, final=final)
        return self.commit(tail, prepared) if prepared is not None else None

    def prepare(self, tail: FileTail, *, final: bool) -> Prepared | None:
        """Stage the next objects durably, without an intent yet (the previous batch may still be in flight).

        Staged files no intent names are deleted at the next start, so a crash here loses nothing.
        """
        current = tail.current
        if current is None:
            return None
        now = self.monotonic()
        waited = now - tail.pending_since if tail.pending_since is not None else 0.0
        quiet = now - tail.last_growth
        final = final or (current.draining and quiet >= self.config.chunk_seconds)
        markers = self._markers(tail, current.generation)
        futures: list[Future[StagedChunk]] = []
        start = tail.offset
        while len(futures) < self.config.chunks_per_batch:
            block = tail.read(start, self.config.chunk_bytes)
            length = chunking.cut_length(block, self.policy, waited=waited, quiet=quiet, final=final)
            if length == 0:
                break
            behind_start = max(0, start - redaction.CONTEXT)
            behind = tail.read(behind_start, start - behind_start)
            ahead = tail.read(start + length, redaction.CONTEXT)
            window = b"".join((behind, memoryview(block)[:length], ahead))
            clean = redaction.redact(window, len(behind), len(behind) + length, self.own_key)
            end = start + length
            cut = len(behind) + length
            fp = tail_fingerprint(bytes(memoryview(window)[max(0, cut - 64) : cut]), end)
            del window, ahead, behind, block
            if len(futures) >= COMPRESSORS:
                futures[-COMPRESSORS].result()  # bounded memory: this chunk and those compressing
            futures.append(
                self._compressor.submit(self._compress, tail.source_id, current.generation, start, clean, fp)
            )
            start = end
        if not futures and not markers:
            return None
        chunks = [future.result() for future in futures]
        fp = (chunks[-1].fp_start, chunks[-1].fingerprint) if chunks else tail_fp(tail)
        return Prepared(current.generation, current.dev, current.ino, (*markers, *chunks), start, fp)

    def commit(self, tail: FileTail, prepared: Prepared) -> Intent:
        """Name prepared objects in the source's intent (atomic) and move the tail past them."""
        intent = Intent(
            source_id=tail.source_id,
            path=tail.path,
            generation=prepared.generation,
            dev=prepared.dev,
            ino=prepared.ino,
            chunks=prepared.chunks,
            head_len=tail.head[0],
            head=tail.head[1],
        )
        self.store.save_intent(intent)
        tail.shipped(prepared.end, prepared.fp)
        return intent

    def discard(self, prepared: Prepared) -> None:
        """Delete prepared objects that will not be committed (the batch before them failed)."""
        for chunk in prepared.chunks:
            with contextlib.suppress(FileNotFoundError):
                (self.store.staged / chunk.staged).unlink()

    def _compress(
        self, source: str, generation: int, start: int, clean: bytes, fp: tuple[int, str]
    ) -> StagedChunk:
        """Gzip a redacted chunk and stage it durably (on the compressor thread)."""
        end = start + len(clean)
        body = chunking.compress(clean, self.config.gzip_level)
        staged, digest = self.store.stage(source, generation, start, end, body)
        suffix = chunking.object_suffix(source, generation, start, end)
        return StagedChunk(
            start=start,
            end=end,
            suffix=suffix,
            staged=staged,
            sha256=digest,
            fp_start=fp[0],
            fingerprint=fp[1],
        )


def tail_fp(tail: FileTail) -> tuple[int, str]:
    """The tail fingerprint at the tail's offset, read back from the file (markers-only batches)."""
    start = max(0, tail.offset - 64)
    return tail_fingerprint(tail.read(start, tail.offset - start), tail.offset)
