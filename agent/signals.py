"""Stop requests shared by the signal handlers, the keysvc probe thread and the main loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Signals:
    """Stop requests shared with signal handlers and the probe thread."""

    refused: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    terminate_at: float | None = None

    def terminate(self, now: float) -> None:
        """Ask for a flush and a clean exit (SIGTERM/SIGINT)."""
        if self.terminate_at is None:
            self.terminate_at = now
        self.wake.set()
