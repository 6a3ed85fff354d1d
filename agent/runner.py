"""The agent's main loop: follow sources, stage chunks, deliver them, stop on expiry, refusal or SIGTERM.

Delivery of a source's next chunks, step by step (each step durable before the next)::

    read block -> cut -> redact in context -> gzip -> stage (fsync) ... -> intent (atomic)
      -> grant (one request for the batch) -> PUT the chunks (in parallel)
      -> position := end of the acknowledged prefix (atomic) -> drop intent   (agent.delivery)

A ``kill -9`` between any two steps is safe: staged files without an intent are deleted at start;
an intent is re-sent as is (same names, same bytes; 412 = already there); a position never passes a
chunk the bucket did not acknowledge.

Time: expiry comes from keysvc (``key_expires_at - server_time``), mapped onto the local monotonic
clock when the answer arrives, never the node's wall clock; until then ``key_deadline`` (see
:mod:`agent.lifetime`) bounds the run. The final flush starts ``expiry_margin_seconds`` before
that. A probe thread asks keysvc every ``probe_seconds``: a revocation stops the agent within 5 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from agent import keyfile, lifetime
from agent.checkpoint import StateStore
from agent.config import AgentConfig
from agent.delivery import Delivery
from agent.errors import KeyExpired, KeyRefused, TransportError
from agent.journal import JournalSpool
from agent.keyfile import NodeKey
from agent.progress import Progress
from agent.siblings import is_rotated_sibling
from agent.signals import Signals
from agent.sources import FileTail, expand, is_glob, own_output_identities
from agent.staging import Stager
from agent.transport import Requester
from agent.uploader import RETRYABLE, GrantAnswer, KeysvcClient

log = structlog.get_logger()

JOURNAL_PULL_SECONDS = 1.0
#: Batches a source may send before the other sources get their turn.
ROUND_BATCHES = 4


class Agent:
    """One run of the agent for one key."""

    def __init__(
        self,
        config: AgentConfig,
        key: NodeKey,
        store: StateStore,
        transport: Requester,
        probe_transport: Requester,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        signals: Signals | None = None,
        key_deadline: float = float("inf"),
        life: lifetime.Lifetime | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.store = store
        self.transport = transport
        self.monotonic = monotonic
        self.wall = wall
        self.signals = signals or Signals()
        scope = {"cluster": config.cluster, "node": config.node, "region": config.region}
        self.client = KeysvcClient(transport, config.endpoint, key, monotonic=monotonic, **scope)
        self.probe_client = KeysvcClient(probe_transport, config.endpoint, key, monotonic=monotonic, **scope)
        self.own_key = key.secret.encode("ascii")
        self.expires_at = key_deadline  # an upper bound until keysvc answers; its answer wins
        self.life = life
        self.progress = Progress(config.progress_seconds)
        self.refusal: KeyRefused | None = None
        self.last_contact = float("-inf")
        self.tails: dict[str, FileTail] = {}
        self.spools: dict[str, JournalSpool] = {}
        self.skipped: set[str] = set()
        self.stager = Stager(config, store, self.own_key, monotonic)
        self._deliverer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deliver")
        self.skip = own_output_identities()
        self.hard_deadline = float("inf")
        self.delivery = Delivery(
            store,
            self.client,
            transport,
            monotonic=monotonic,
            sleep=self._sleep,
            should_stop=self._should_stop,
            on_answer=self._learn,
            max_wait=config.retry_max_wait,
            concurrency=config.put_concurrency,
        )

    # time and stopping ----------------------------------------------------------------------
    def _learn(self, answer: GrantAnswer) -> None:
        self.expires_at = answer.expires_at
        self.last_contact = self.monotonic()
        if self.life is not None:
            self.life.accepted(self.config.endpoint)

    def _refused(self, cause: Exception | None = None) -> KeyRefused:
        """The refusal that stops this run (the probe thread's, if it saw one first)."""
        if self.refusal is None:
            self.refusal = cause if isinstance(cause, KeyRefused) else KeyRefused("keysvc refused the key")
        return self.refusal

    def _should_stop(self) -> bool:
        now = self.monotonic()
        if self.signals.refused.is_set() or now >= min(self.hard_deadline, self.expires_at):
            return True
        if self.hard_deadline == float("inf") and now >= self.expires_at - self.config.expiry_margin_seconds:
            return True  # time for the final flush, which retries on until expiry itself
        term = self.signals.terminate_at
        return term is not None and now >= term + self.config.stop_flush_seconds

    def _sleep(self, seconds: float) -> None:
        term = self.signals.terminate_at
        if term is None:
            self.signals.wake.wait(max(0.0, min(seconds, self.expires_at - self.monotonic())))
            if self.signals.terminate_at is None and not self.signals.refused.is_set():
                self.signals.wake.clear()
            return
        # After SIGTERM ``wake`` stays set, so the loop goes straight to the final flush; the flush's
        # retries must still back off (else they spin and flood the journal) until its budget ends
        # or keysvc refuses the key.
        left = term + self.config.stop_flush_seconds - self.monotonic()
        self.signals.refused.wait(max(0.0, min(seconds, left)))

    def _probe_loop(self) -> None:
        while not self.signals.refused.is_set():
            if self.monotonic() - self.last_contact >= self.config.probe_seconds:
                try:
                    self._learn(self.probe_client.grant([]))
                except KeyRefused as exc:
                    log.warning("key_refused", key_id=self.key.key_id, ended=exc.ended)
                    self._refused(exc)
                    self.signals.refused.set()
                    self.signals.wake.set()
                    return
                except (*RETRYABLE, TransportError) as exc:
                    log.warning("probe_failed", error=type(exc).__name__, detail=str(exc))
            self.signals.refused.wait(self.config.probe_seconds / 2)

    def pump(self, tail: FileTail, *, final: bool = False, batches: int = 1 << 30) -> bool:
        """Stage and deliver what the source has ready, at most ``batches`` batches; True if it has more.

        An intent whose delivery was interrupted (a retry loop that ran out of time) is delivered
        before anything new is staged: a source never has two intents, and nothing is skipped.
        While a full batch is delivered, the next one is prepared (read, redacted, compressed and
        staged), but it is named in an intent only once the previous intent is delivered.
        """
        for left in range(batches - 1, -1, -1):
            intent = self.delivery.undelivered.get(tail.source_id)
            if intent is None:
                intent = self.stager.stage(tail, final=final)
                if intent is None:
                    break
                self.delivery.undelivered[intent.source_id] = intent
            full = len(intent.chunks) >= self.config.chunks_per_batch or final
            delivering = self._deliverer.submit(self.delivery.deliver, intent)
            try:
                prepared = self.stager.prepare(tail, final=final) if full and left else None
            finally:
                failure = delivering.exception()
            if failure is not None:
                if prepared is not None:
                    self.stager.discard(prepared)
                raise failure
            if not left and full:
                return True  # the other sources get their turn first
            if prepared is None:
                break
            self.delivery.undelivered[tail.source_id] = self.stager.commit(tail, prepared)
        if tail.drained(self.monotonic(), quiet_for=0.0 if final else self.config.chunk_seconds):
            return self.pump(tail, final=final, batches=batches)
        return False

    # sources --------------------------------------------------------------------------------
    def discover(self) -> None:
        """Create tails for configured paths, for files a glob now matches, and for journald units."""
        now = self.monotonic()
        for spec in self.config.sources:
            if spec.startswith("journal:"):
                unit = spec.removeprefix("journal:")
                if spec in self.spools or spec in self.skipped:
                    continue
                why = JournalSpool.usable(unit)
                if why is not None:
                    log.warning("source_skipped", source=spec, reason=why)
                    self.skipped.add(spec)
                    continue
                spool = JournalSpool(unit, self.store, directory=self.config.journal_directory)
                self.spools[spec] = spool
                tail = FileTail(str(spool.spool), self.store, spec=spec, skip=set())
                tail.limit = spool.state.spool_size
                self._add(tail, now)
                continue
            matched = expand(spec) if is_glob(spec) else [spec]
            for path in matched:
                if path not in self.tails and not is_rotated_sibling(path, {*matched, *self.tails}):
                    self._add(FileTail(path, self.store, skip=self.skip), now)

    def _add(self, tail: FileTail, now: float) -> None:
        tail.start(now)
        self.tails[tail.path] = tail
        log.info("source_added", source=tail.source_id, path=tail.path)

    def _pull_journals(self) -> None:
        for spec, spool in self.spools.items():
            size = spool.pull()
            tail = self.tails.get(str(spool.spool))
            if tail is not None:
                tail.limit = size
            log.debug("journal_pulled", source=spec, size=size)

    def _pump_all(self, *, final: bool) -> None:
        """Pump every source in turns of a few batches, so one source's backlog does not starve the rest."""
        now = self.monotonic()
        busy = list(self.tails.values())
        for tail in busy:
            tail.refresh(now)
        while busy:
            busy = [tail for tail in busy if self.pump(tail, final=final, batches=ROUND_BATCHES)]

    # the loop -------------------------------------------------------------------------------
    def _final_flush(self, deadline: float) -> None:
        self.hard_deadline = deadline
        try:
            if self.spools:
                self._pull_journals()
            self._pump_all(final=True)
        except RETRYABLE as exc:
            self._gave_up(exc, "final_flush")
            log.warning(
                "final_flush_incomplete", detail="undelivered chunks stay staged in the state directory"
            )

    def _finish(self, reason: str) -> None:
        keyfile.mark_finished(Path(self.config.state_dir), self.key.key_id, reason, self.wall())
        removed = keyfile.remove_key(Path(self.config.key_file))
        log.info("key_finished", key_id=self.key.key_id, reason=reason, key_file_removed=removed)

    def _stop_now(self) -> int:
        """Stop without the loop: pending intents could not be resent before a stop condition hit."""
        if self.monotonic() >= self.expires_at - self.config.expiry_margin_seconds:
            self._finish("expired")
            raise KeyExpired("the key expired before pending chunks could be resent")
        return 0

    def run(self) -> int:
        """Run until SIGTERM (returns 0), expiry (raises KeyExpired) or refusal (raises KeyRefused)."""
        started = self.monotonic()
        try:
            return self._run(started)
        except KeyRefused as exc:
            self.signals.refused.set()
            before = self.life is not None and self.life.ledger.accepted_by == self.config.endpoint
            accepted = before or self.last_contact > float("-inf")
            past = self.monotonic() >= self.expires_at
            verdict = lifetime.end_refused(self._refused(exc), accepted, past, self.key.key_id, self.config)
            self._finish(verdict)
            if verdict == "expired":
                raise KeyExpired(f"key {self.key.key_id} is past its expiry and keysvc refused it") from None
            raise self._refused() from None
        finally:
            self.signals.refused.set()  # ends the probe thread
            self.delivery.close()
            self.progress.summary(self.tails.values(), self.delivery, self.monotonic() - started)
            self._deliverer.shutdown(wait=True)
            self.stager.close()
            for tail in self.tails.values():
                tail.close()

    def _gave_up(self, exc: Exception, during: str) -> None:
        """Turn a retry loop that ran out of time into the stop that ended it; re-raise anything else."""
        if self.signals.refused.is_set():
            raise self._refused() from exc
        if not self._should_stop():
            raise exc
        log.warning("delivery_interrupted", during=during, error=type(exc).__name__, detail=str(exc))

    def _open_session(self) -> bool:
        """Learn the key's life from keysvc, retrying while it is unreachable; False if told to stop."""
        while True:
            try:
                self.delivery.grant([])
            except RETRYABLE as exc:
                self._gave_up(exc, "session")
                if self.signals.terminate_at is not None:
                    return False
                if self.monotonic() >= self.expires_at - self.config.expiry_margin_seconds:
                    log.warning("keysvc_never_answered", key_id=self.key.key_id)
                    return True  # the loop's expiry check ends the run
            else:
                seconds_left = round(self.expires_at - self.monotonic(), 1)
                log.info("session", key_id=self.key.key_id, seconds_left=seconds_left)
                return True

    def _stop_requested(self, now: float) -> int | None:
        """Handle refusal, SIGTERM and expiry: return the exit code, raise, or ``None`` to go on."""
        if self.signals.refused.is_set():
            raise self._refused()
        if self.signals.terminate_at is not None:
            log.info("stopping", reason="signal")
            self._final_flush(self.signals.terminate_at + self.config.stop_flush_seconds)
            return 0
        if now >= self.expires_at - self.config.expiry_margin_seconds:
            log.info("stopping", reason="key_expiring", seconds_left=round(self.expires_at - now, 1))
            self._final_flush(self.expires_at)
            self._finish("expired")
            raise KeyExpired("the key expired; final flush done")
        return None

    def _run(self, started: float) -> int:
        if not self._open_session():
            return 0
        threading.Thread(target=self._probe_loop, name="keysvc-probe", daemon=True).start()
        try:
            for intent in self.store.all_intents():
                log.info("resending_intent", source=intent.source_id, chunks=len(intent.chunks))
                self.delivery.deliver(intent)
        except RETRYABLE as exc:
            self._gave_up(exc, "resend")
            return self._stop_now()
        next_discover = next_journal = self.monotonic()
        first = True
        while True:
            now = self.monotonic()
            code = self._stop_requested(now)
            if code is not None:
                return code
            if now >= next_discover:
                self.discover()
                next_discover = now + self.config.discover_seconds
            if self.spools and now >= next_journal:
                self._pull_journals()
                next_journal = now + JOURNAL_PULL_SECONDS
            try:
                self._pump_all(final=False)
            except RETRYABLE as exc:
                self._gave_up(exc, "pump")
                continue
            self.progress.tick(self.monotonic(), self.tails.values(), self.delivery)
            if self.life is not None:
                self.life.heartbeat()
            if first and self.delivery.chunks_delivered:
                log.info("first_upload", seconds=round(self.monotonic() - started, 3))
                first = False
            self._sleep(self.config.poll_seconds)
