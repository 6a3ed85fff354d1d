"""Object names in the bucket, version 1: the chunk naming grammar shared by the agent and keysvc.

Pure: no I/O. The agent proposes a *suffix*; keysvc fixes everything before it::

    <region prefix>/<cluster>/<node>/<source>/<stream>/<start>-<end>.gz
    nodelogs/prod-eu-1/ip-10-0-0-12.ec2.internal/var-log-cloud-init-output.log-3f2a9c1d/g000001/0000000000000000-0000000001048576.gz

- ``source`` names a log source (a file path or a journald unit) in ``[A-Za-z0-9._-]``, 1-128
  characters, starting with a letter or digit, never containing ``..``.
- ``stream`` is ``g`` and six digits: a generation that the agent bumps whenever the source starts
  again from byte 0 (rotation, truncation). Each (source, stream) is one byte stream.
- ``start`` and ``end`` are 16-digit zero-padded byte offsets into that stream, ``start < end``.
  The object holds those bytes, gzip-compressed. Ordered by ``start``, a stream's objects
  reconstruct it exactly: the next object's start is the previous object's end.

Anything else is refused: extra ``/`` segments, ``..``, control characters, other extensions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keysvc.errors import InvalidObjectName

MAX_SUFFIX_LENGTH = 180
OFFSET_DIGITS = 16
_SUFFIX = re.compile(
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9._-]{0,127})/(?P<stream>g[0-9]{6})/"
    r"(?P<start>[0-9]{16})-(?P<end>[0-9]{16})\.gz"
)


@dataclass(frozen=True, slots=True, order=True)
class ChunkName:
    """A parsed chunk suffix."""

    source: str
    stream: str
    start: int
    end: int

    @property
    def suffix(self) -> str:
        """The suffix as the agent proposes it and the bucket stores it."""
        return chunk_suffix(self.source, self.stream, self.start, self.end)


def chunk_suffix(source: str, stream: str, start: int, end: int) -> str:
    """Build a chunk suffix; raises :class:`InvalidObjectName` if the result breaks the grammar."""
    suffix = f"{source}/{stream}/{start:0{OFFSET_DIGITS}d}-{end:0{OFFSET_DIGITS}d}.gz"
    parse_suffix(suffix)
    return suffix


def stream_name(generation: int) -> str:
    """Return the stream segment for a generation number."""
    return f"g{generation:06d}"


def parse_suffix(suffix: str) -> ChunkName:
    """Validate a proposed suffix against the grammar and return its parts."""
    if len(suffix) > MAX_SUFFIX_LENGTH:
        raise InvalidObjectName("object name too long")
    match = _SUFFIX.fullmatch(suffix)
    if match is None or ".." in match["source"]:
        raise InvalidObjectName("object name does not match <source>/g<NNNNNN>/<start>-<end>.gz")
    start, end = int(match["start"]), int(match["end"])
    if start >= end:
        raise InvalidObjectName("object name byte range is empty or reversed")
    return ChunkName(source=match["source"], stream=match["stream"], start=start, end=end)


def node_prefix(prefix: str, cluster: str, node: str) -> str:
    """Return the folder that holds every object of one node, with a trailing slash."""
    parts = [p for p in prefix.strip("/").split("/") if p]
    return "/".join([*parts, cluster, node]) + "/"


def object_name(prefix: str, cluster: str, node: str, suffix: str) -> str:
    """Return the full object name for a validated suffix under the node's own prefix."""
    parse_suffix(suffix)
    return node_prefix(prefix, cluster, node) + suffix
