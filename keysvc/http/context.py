"""What every route needs: the services, the settings, the guard, the clock, the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from keysvc.config import Settings
from keysvc.core.clock import Clock
from keysvc.http.auth import Guard
from keysvc.metrics import Metrics
from keysvc.service.ingest import IngestService
from keysvc.service.keys import KeyService


@dataclass(frozen=True, slots=True)
class Context:
    """The collaborators of every route, fixed when the app is built."""

    keys: KeyService
    ingest: IngestService
    settings: Settings
    guard: Guard
    clock: Clock
    metrics: Metrics
