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

Anything else is refused: extra ``/`` segments, ``..``, control characters, other extensions, except
the generation and gap *markers* described below (``.json``), which sit beside a stream's chunks.
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
    """Return the full object name for a validated suffix (a chunk or a marker) under the node's prefix."""
    parse_object_suffix(suffix)
    return node_prefix(prefix, cluster, node) + suffix


# Markers, version 1 (added after chunks): objects that carry facts in their names, not log bytes.
#
#     <source>/<stream>/generation-first.json
#     <source>/<stream>/generation-after-<previous stream>-<its length|unknown>[-copytruncated].json
#     <source>/<stream>/gap-<start>-<end|unknown>-<deleted|truncated|unreadable>.json
#
# A *generation record* is written when a stream starts: it names the stream before it and that
# stream's final length, so a reader can tell a whole missing generation, or a missing tail, from an
# empty one, even after a crash. ``copytruncated`` says the boundary between the two streams is a
# copytruncate: bytes written between the copy and the truncate are unknowable. A *gap record* says
# the agent knows it could not ship bytes ``[start, end)`` of the stream (``unknown`` end: to the end
# of a file it could not read at all). The body is a small JSON restating the name; readers need
# only the name.

UNKNOWN = "unknown"
GAP_REASONS = ("deleted", "truncated", "unreadable")
_OPT_OFFSET = r"[0-9]{16}|unknown"
_MARKER = re.compile(
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9._-]{0,127})/(?P<stream>g[0-9]{6})/(?:"
    r"generation-(?:first|after-(?P<previous>g[0-9]{6})-(?P<length>" + _OPT_OFFSET + r")"
    r"(?P<copytruncated>-copytruncated)?)"
    r"|gap-(?P<start>[0-9]{16})-(?P<end>" + _OPT_OFFSET + r")-(?P<reason>" + "|".join(GAP_REASONS) + r")"
    r")\.json"
)


@dataclass(frozen=True, slots=True, order=True)
class MarkerName:
    """A parsed marker suffix: a generation record (``kind="generation"``) or a gap record (``"gap"``).

    ``None`` stands for ``unknown`` (and, for ``previous``, for the first generation).
    """

    source: str
    stream: str
    kind: str
    previous: str | None = None
    length: int | None = None
    copytruncated: bool = False
    start: int = 0
    end: int | None = None
    reason: str = ""

    @property
    def suffix(self) -> str:
        """The suffix as the agent proposes it."""
        if self.kind == "gap":
            return gap_suffix(self.source, self.stream, self.start, self.end, self.reason)
        return generation_suffix(self.source, self.stream, self.previous, self.length, self.copytruncated)


def _opt(value: int | None) -> str:
    return UNKNOWN if value is None else f"{value:0{OFFSET_DIGITS}d}"


def generation_suffix(
    source: str, stream: str, previous: str | None, length: int | None, copytruncated: bool = False
) -> str:
    """Build a generation record's suffix; ``previous=None`` for a source's first generation."""
    if previous is None:
        suffix = f"{source}/{stream}/generation-first.json"
    else:
        flag = "-copytruncated" if copytruncated else ""
        suffix = f"{source}/{stream}/generation-after-{previous}-{_opt(length)}{flag}.json"
    parse_marker(suffix)
    return suffix


def gap_suffix(source: str, stream: str, start: int, end: int | None, reason: str) -> str:
    """Build a gap record's suffix for bytes ``[start, end)`` (``end=None``: to an unknown end)."""
    suffix = f"{source}/{stream}/gap-{start:0{OFFSET_DIGITS}d}-{_opt(end)}-{reason}.json"
    parse_marker(suffix)
    return suffix


def parse_marker(suffix: str) -> MarkerName:
    """Validate a marker suffix and return its parts."""
    match = _MARKER.fullmatch(suffix) if len(suffix) <= MAX_SUFFIX_LENGTH else None
    if match is None or ".." in match["source"]:
        raise InvalidObjectName("object name is not a generation or gap record")
    source, stream = match["source"], match["stream"]
    if match["reason"] is not None:
        start = int(match["start"])
        end = None if match["end"] == UNKNOWN else int(match["end"])
        if end is not None and end <= start:
            raise InvalidObjectName("gap record byte range is empty or reversed")
        return MarkerName(source, stream, "gap", start=start, end=end, reason=match["reason"])
    length = None if match["length"] in (None, UNKNOWN) else int(match["length"])
    return MarkerName(
        source,
        stream,
        "generation",
        previous=match["previous"],
        length=length,
        copytruncated=match["copytruncated"] is not None,
    )


def parse_object_suffix(suffix: str) -> ChunkName | MarkerName:
    """Validate any suffix an agent may propose: a chunk or a marker."""
    if suffix.endswith(".json"):
        return parse_marker(suffix)
    return parse_suffix(suffix)
