"""Real journal files for the journald tests: export format in, ``systemd-journal-remote`` writes them.

Not collected by pytest (no ``test_`` prefix). ``systemd-journal-remote`` (Debian package
``systemd-journal-remote``, installed by ``.ci/bootstrap``) reads the journal export format on stdin
and writes a real journal file, which the real ``journalctl --directory`` reads. What it does, checked
on systemd 252: reading stdin it needs ``--output=FILE.journal`` (a directory is refused for a
passive source) in a directory that exists; a second run on the same file appends to it, continuing
the sequence numbers; a second file in the directory is read by ``journalctl --directory`` together
with the first, and a cursor from one file carries on into the other, like journald's rotated files.
"""

from __future__ import annotations

import struct
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")
JOURNALCTL = "journalctl"


@dataclass(frozen=True)
class Entry:
    """One journal entry as a service on a node would log it."""

    unit: str
    message: bytes
    realtime_us: int
    boot_id: str
    pid: int = 4242
    #: SYSLOG_IDENTIFIER; empty: the unit name without ``.service``.
    identifier: str = ""
    hostname: str = "node-1"
    extra: tuple[tuple[str, bytes], ...] = field(default=())

    def export(self) -> bytes:
        """The entry in journal export format; values holding a newline use the binary form."""
        fields: list[tuple[str, bytes]] = [
            ("__REALTIME_TIMESTAMP", str(self.realtime_us).encode()),
            ("__MONOTONIC_TIMESTAMP", str(self.realtime_us % 10**12).encode()),
            ("_BOOT_ID", self.boot_id.encode()),
            ("_HOSTNAME", self.hostname.encode()),
            ("_SYSTEMD_UNIT", self.unit.encode()),
            ("SYSLOG_IDENTIFIER", (self.identifier or self.unit.removesuffix(".service")).encode()),
            ("_PID", str(self.pid).encode()),
            ("PRIORITY", b"6"),
            ("MESSAGE", self.message),
            *self.extra,
        ]
        out = []
        for name, value in fields:
            if b"\n" in value:
                out.append(name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n")
            else:
                out.append(name.encode() + b"=" + value + b"\n")
        return b"".join(out) + b"\n"


@dataclass
class Journal:
    """A directory of journal files written by ``systemd-journal-remote``; one boot, a moving clock."""

    directory: Path
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    clock_us: int = 1_795_000_000_000_000

    def entries(self, unit: str, messages: list[bytes]) -> list[Entry]:
        """Entries of ``unit``, one per message, a millisecond apart after everything written so far."""
        out = []
        for message in messages:
            self.clock_us += 1000
            out.append(Entry(unit, message, self.clock_us, self.boot_id))
        return out

    def from_pid1(self, unit: str, message: bytes) -> Entry:
        """What systemd (PID 1) logs about ``unit``; ``journalctl --unit`` shows it with the unit's own."""
        self.clock_us += 1000
        return Entry(
            "init.scope",
            message,
            self.clock_us,
            self.boot_id,
            pid=1,
            identifier="systemd",
            extra=(("UNIT", unit.encode()),),
        )

    def write(self, entries: list[Entry], file_name: str = "remote.journal") -> None:
        """Append ``entries`` to ``directory/file_name`` with the real ``systemd-journal-remote``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(JOURNAL_REMOTE), f"--output={self.directory / file_name}", "-"],
            input=b"".join(entry.export() for entry in entries),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert f"writing {len(entries)} entries".encode() in done.stderr, done.stderr

    def read(self, unit: str) -> bytes:
        """What ``journalctl --directory`` prints for ``unit`` with the agent's output flags, cursor aside."""
        done = subprocess.run(
            [
                JOURNALCTL,
                f"--directory={self.directory}",
                "--unit",
                unit,
                "--output",
                "short-iso",
                "--all",
                "--no-pager",
                "--quiet",
            ],
            capture_output=True,
            timeout=30,
            check=True,
        )
        return done.stdout
