"""journald sources: a unit's entries copied into an append-only spool file, then tailed like a file.

A :class:`JournalSpool` runs ``journalctl`` with a cursor and appends its output to a spool file in
the state directory; the cursor and the spool size are committed together, so a crash never
duplicates or drops an entry.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import structlog

from agent.checkpoint import JournalState, StateStore
from agent.chunking import source_id

log = structlog.get_logger()

OWN_UNITS = frozenset({"nodelogs-agent", "nodelogs-agent.service"})


class JournalSpool:
    """Copies a journald unit's entries (``journalctl`` with a cursor) into an append-only spool file.

    ``directory`` reads the journal files there (``journalctl --directory``) instead of the system
    journal; ``--boot`` then means the latest boot those files hold.
    """

    def __init__(
        self,
        unit: str,
        store: StateStore,
        journalctl: str | None = None,
        *,
        directory: str | None = None,
    ) -> None:
        self.unit = unit
        self.directory = directory
        self.spec = f"journal:{unit}"
        self.source_id = source_id(self.spec)
        self.store = store
        self.journalctl = journalctl or shutil.which("journalctl")
        self.spool = store.journal / f"{self.source_id}.log"
        state = store.load_journal(self.source_id)
        self.state = state or JournalState(cursor="", spool_size=0)
        fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, self.state.spool_size)
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def usable(unit: str) -> str | None:
        """Return why a unit cannot be followed here, or ``None`` when it can."""
        if unit in OWN_UNITS or f"{unit}.service" in OWN_UNITS:
            return "it is the agent's own unit (the agent never tails its own logs)"
        if shutil.which("journalctl") is None:
            return "journalctl is not installed on this node"
        return None

    def pull(self, timeout: float = 10.0) -> int:
        """Append new entries to the spool and commit the cursor; return the committed spool size."""
        if self.journalctl is None:
            return self.state.spool_size
        argv = [
            self.journalctl,
            "--unit",
            self.unit,
            "--output",
            "short-iso",
            "--all",
            "--no-pager",
            "--quiet",
            "--show-cursor",
        ]
        if self.directory is not None:
            argv.append(f"--directory={self.directory}")
        argv += ["--after-cursor", self.state.cursor] if self.state.cursor else ["--boot"]
        with self.spool.open("r+b") as spool:
            spool.seek(self.state.spool_size)
            spool.truncate()
            try:
                done = subprocess.run(
                    argv, stdout=spool, stderr=subprocess.PIPE, timeout=timeout, check=False
                )
                if done.returncode != 0:  # e.g. a cursor the journal no longer has (vacuumed)
                    detail = done.stderr[-300:].decode("utf-8", "replace")
                    log.warning("journalctl_failed", unit=self.unit, code=done.returncode, detail=detail)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("journalctl_failed", unit=self.unit, error=str(exc))
                spool.truncate(self.state.spool_size)
                return self.state.spool_size
            end = spool.seek(0, os.SEEK_END)
            tail_start = max(self.state.spool_size, end - 4096)
            spool.seek(tail_start)
            tail = spool.read()
            marker = tail.rfind(b"\n-- cursor: ")
            if marker < 0:  # no new entries (or journalctl died before printing its cursor)
                spool.truncate(self.state.spool_size)
                return self.state.spool_size
            cursor = tail[marker + len(b"\n-- cursor: ") :].strip().decode("ascii", "replace")
            new_size = tail_start + marker + 1
            spool.truncate(new_size)
            spool.flush()
            os.fsync(spool.fileno())
        if cursor and new_size >= self.state.spool_size:
            self.state = JournalState(cursor=cursor, spool_size=new_size)
            self.store.save_journal(self.source_id, self.state)
        return self.state.spool_size
