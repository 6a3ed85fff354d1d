"""Delivering staged intents: one grant request per batch, parallel PUTs, then the position.

For an intent (chunks already staged and named durably, see :mod:`agent.checkpoint`)::

    grant (one request for the batch) -> PUT each chunk (in parallel, each with its own retries)
      -> position := end of the longest acknowledged prefix (atomic) -> drop the intent

A crash between any two steps re-sends the intent as is on the next run; the bucket answers 412
("already there") for chunks it has, so objects never overlap and nothing is skipped. Retrying and
stopping are the caller's policy, passed in as ``sleep`` and ``should_stop``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import structlog

from agent.checkpoint import Intent, Position, StagedChunk, StateStore
from agent.errors import StateCorrupt
from agent.transport import Requester
from agent.uploader import RETRYABLE, Grant, GrantAnswer, KeysvcClient, put_chunk, retrying

log = structlog.get_logger()

#: A grant is renewed when less than this is left of its URL's life.
GRANT_REUSE_SECONDS = 10.0


class Delivery:
    """Sends intents to the bucket; thread-safe PUTs, a single caller for :meth:`deliver`."""

    def __init__(
        self,
        store: StateStore,
        client: KeysvcClient,
        transport: Requester,
        *,
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
        should_stop: Callable[[], bool],
        on_answer: Callable[[GrantAnswer], None],
        max_wait: float,
        concurrency: int,
    ) -> None:
        self.store = store
        self.client = client
        self.transport = transport
        self.monotonic = monotonic
        self.sleep = sleep
        self.should_stop = should_stop
        self.on_answer = on_answer
        self.max_wait = max_wait
        self.grants: dict[str, Grant] = {}
        #: Intents staged by this run whose delivery has not finished (at most one per source).
        self.undelivered: dict[str, Intent] = {}
        self.chunks_delivered = 0
        #: Bytes the bucket acknowledged in this run, per source (for the progress lines).
        self.bytes_delivered: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="put")

    def close(self) -> None:
        """Stop the PUT threads (none is busy once :meth:`deliver` has returned)."""
        self._pool.shutdown(wait=True)

    def _retrying(self) -> Callable[..., object]:
        return retrying(sleep=self.sleep, should_stop=self.should_stop, max_wait=self.max_wait)

    def _ask(self, names: list[str]) -> None:
        answer = self.client.grant(names)
        self.on_answer(answer)
        with self._lock:
            self.grants.update(answer.grants)

    def grant(self, names: list[str]) -> None:
        """Ask keysvc for URLs for ``names`` (an empty list is a session probe), retrying as needed."""
        self._retrying()(lambda: self._ask(names))

    def put(self, chunk: StagedChunk) -> None:
        """PUT one staged chunk, with a fresh grant when its URL expired or was refused."""
        body = self.store.read_staged(chunk)

        def attempt() -> str:
            with self._lock:
                grant = self.grants.get(chunk.suffix)
            if grant is None or grant.deadline - self.monotonic() < GRANT_REUSE_SECONDS:
                self._ask([chunk.suffix])
                with self._lock:
                    grant = self.grants[chunk.suffix]
            try:
                return put_chunk(self.transport, grant, body)
            except RETRYABLE:
                with self._lock:
                    self.grants.pop(chunk.suffix, None)
                raise

        outcome = self._retrying()(attempt)
        with self._lock:
            self.grants.pop(chunk.suffix, None)
            self.chunks_delivered += 1
        log.debug("chunk_delivered", object=chunk.suffix, outcome=outcome)

    def _todo(self, intent: Intent) -> list[StagedChunk]:
        """The intent's chunks the bucket has not acknowledged, checked against the position."""
        where = self.store.intents / f"{intent.source_id}.json"
        position = self.store.load_position(intent.source_id)
        if position is not None and position.generation > intent.generation:
            return []
        if position is not None and position.generation == intent.generation:
            # At offset 0 the generation may only be bound locally (its first sighting): its markers
            # may not be in the bucket yet. Re-sending one that is answers 412, nothing more.
            todo = [
                chunk
                for chunk in intent.chunks
                if chunk.end > position.offset or (position.offset == 0 and chunk.start == chunk.end)
            ]
            if todo and todo[0].start != position.offset:
                raise StateCorrupt(
                    f"intent {where} does not start at the acknowledged offset {position.offset}"
                )
            return todo
        if intent.chunks and intent.chunks[0].start != 0:
            raise StateCorrupt(f"intent {where} has no base position")
        return list(intent.chunks)

    def deliver(self, intent: Intent) -> None:
        """Send an intent's unacknowledged chunks (in parallel), then advance the position.

        The position moves to the end of the longest acknowledged prefix, and only after every PUT of
        the batch has finished; the first failure is then re-raised and the intent stays pending.
        """
        todo = self._todo(intent)
        if todo:
            with self._lock:
                missing = [chunk.suffix for chunk in todo if chunk.suffix not in self.grants]
            if missing:
                self.grant(missing)
        futures = [self._pool.submit(self.put, chunk) for chunk in todo]
        wait(futures)
        delivered = None
        for chunk, future in zip(todo, futures, strict=True):
            if future.exception() is not None:
                break
            delivered = chunk
        if delivered is not None:
            done = self.bytes_delivered.get(intent.source_id, 0) + delivered.end - todo[0].start
            self.bytes_delivered[intent.source_id] = done
            self.store.save_position(
                Position(
                    source_id=intent.source_id,
                    path=intent.path,
                    generation=intent.generation,
                    offset=delivered.end,
                    dev=intent.dev,
                    ino=intent.ino,
                    fp_start=delivered.fp_start,
                    fingerprint=delivered.fingerprint,
                    head_len=intent.head_len,
                    head=intent.head,
                )
            )
        for future in futures:
            future.result()  # re-raise the first failure, after the acknowledged prefix is saved
        self.store.drop_intent(intent)
        self.undelivered.pop(intent.source_id, None)
