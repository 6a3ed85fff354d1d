"""Pure rotation naming: which names in a directory are rotated generations of a log, oldest first.

The schemes nodes use, for a log ``app.log`` (kubelet: ``0.log``):

- logrotate's numbered shift: ``app.log.1`` (newest) ... ``app.log.N`` (oldest);
- logrotate ``dateext``: ``app.log-20261201`` (older dates are older), also ``-%Y%m%d-%s`` forms;
- ``compress``/``delaycompress``: any of the above with ``.gz``;
- kubelet's container logs: ``0.log.20261201-120000`` (a timestamp), later ``...gz``.

:func:`rank` gives each name a sort key; the live file sorts last. A name and its ``.gz`` have the
same key apart from ``compressed``, and the plain one sorts first: while ``gzip`` runs both exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STAMP = re.compile(r"[0-9][0-9TZ_:.-]*[0-9Z]|[0-9]")


@dataclass(frozen=True, slots=True, order=True)
class Rank:
    """Sort key of a generation's file name: ``(scheme, value)``, then mtime, then plain before gz."""

    scheme: int
    value: tuple[int, str]
    mtime_ns: int
    compressed: bool


def rank(base: str, name: str, mtime_ns: int = 0) -> Rank | None:
    """Return the sort key of ``name`` as a generation of the log named ``base``, or ``None``."""
    if name == base:
        return Rank(3, (0, ""), mtime_ns, compressed=False)
    if not name.startswith(base) or len(name) <= len(base) + 1 or name[len(base)] not in ".-":
        return None
    rest = name[len(base) + 1 :]
    compressed = rest.endswith(".gz")
    rest = rest.removesuffix(".gz")
    if not _STAMP.fullmatch(rest):
        return None
    if rest.isdigit() and len(rest) < 8:
        return Rank(1, (-int(rest), ""), mtime_ns, compressed)  # numbered: higher is older
    return Rank(2, (0, rest), mtime_ns, compressed)  # dated: earlier is older


def twin_key(item: Rank) -> tuple[int, tuple[int, str]]:
    """The part of a rank a file and its ``.gz`` share."""
    return item.scheme, item.value
