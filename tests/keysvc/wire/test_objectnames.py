"""The chunk naming grammar shared by the agent and keysvc."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysvc.errors import InvalidObjectName
from keysvc.wire import objectnames

GOOD = "var-log-cloud-init-output.log-3f2a9c1d/g000001/0000000000000000-0000000001048576.gz"


def test_parse_good_suffix() -> None:
    """A valid suffix parses into source, stream and byte range, and rebuilds identically."""
    name = objectnames.parse_suffix(GOOD)
    assert (name.source, name.stream, name.start, name.end) == (
        "var-log-cloud-init-output.log-3f2a9c1d",
        "g000001",
        0,
        1048576,
    )
    assert name.suffix == GOOD


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../etc/g000001/0000000000000000-0000000000000001.gz",
        "a..b/g000001/0000000000000000-0000000000000001.gz",
        "src/g000001/0000000000000001-0000000000000001.gz",
        "src/g000001/0000000000000002-0000000000000001.gz",
        "src/g1/0000000000000000-0000000000000001.gz",
        "src/g000001/0-1.gz",
        "src/g000001/0000000000000000-0000000000000001.txt",
        "a/src/g000001/0000000000000000-0000000000000001.gz",
        "/src/g000001/0000000000000000-0000000000000001.gz",
        "src\n/g000001/0000000000000000-0000000000000001.gz",
        ".hidden/g000001/0000000000000000-0000000000000001.gz",
        "x" * 129 + "/g000001/0000000000000000-0000000000000001.gz",
    ],
)
def test_bad_suffixes_are_refused(bad: str) -> None:
    """Traversal, empty or reversed ranges, other shapes and extensions are refused."""
    with pytest.raises(InvalidObjectName):
        objectnames.parse_suffix(bad)


@given(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}", fullmatch=True),
    st.integers(0, 999_999),
    st.integers(0, 10**15),
    st.integers(1, 10**6),
)
def test_round_trip(source: str, generation: int, start: int, length: int) -> None:
    """Any valid parts build a suffix that parses back to the same parts."""
    suffix = objectnames.chunk_suffix(source, objectnames.stream_name(generation), start, start + length)
    parsed = objectnames.parse_suffix(suffix)
    assert (parsed.source, parsed.stream, parsed.start, parsed.end) == (
        source,
        f"g{generation:06d}",
        start,
        start + length,
    )


def test_chunks_sort_by_offset() -> None:
    """Chunk names of one stream order by their start offset."""
    names = [
        objectnames.parse_suffix(objectnames.chunk_suffix("s", "g000000", a, b))
        for a, b in [(20, 30), (0, 10), (10, 20)]
    ]
    assert [n.start for n in sorted(names)] == [0, 10, 20]


def test_object_name_under_node_prefix() -> None:
    """The full name puts the suffix under <prefix>/<cluster>/<node>/."""
    assert objectnames.node_prefix("/nodelogs/", "prod", "node-1") == "nodelogs/prod/node-1/"
    assert objectnames.node_prefix("", "prod", "node-1") == "prod/node-1/"
    assert objectnames.object_name("nodelogs", "prod", "node-1", GOOD) == f"nodelogs/prod/node-1/{GOOD}"
    with pytest.raises(InvalidObjectName):
        objectnames.object_name("nodelogs", "prod", "node-1", "../../other/x.gz")


def test_markers_round_trip_through_their_names() -> None:
    """Generation and gap records parse back to the facts they were built from, unknowns included."""
    record = objectnames.generation_suffix("app-1", "g000003", "g000002", 4096, copytruncated=True)
    assert record == "app-1/g000003/generation-after-g000002-0000000000004096-copytruncated.json"
    assert objectnames.parse_object_suffix(record).suffix == record
    first = objectnames.parse_marker(objectnames.generation_suffix("app-1", "g000001", None, None))
    assert (first.kind, first.previous, first.length) == ("generation", None, None)
    gap = objectnames.parse_marker(objectnames.gap_suffix("app-1", "g000002", 10, None, "deleted"))
    assert (gap.kind, gap.start, gap.end, gap.reason) == ("gap", 10, None, "deleted")


@pytest.mark.parametrize(
    "suffix",
    [
        "app-1/g000002/gap-0000000000000010-0000000000000010-deleted.json",  # empty range
        "app-1/g000002/gap-0000000000000000-unknown-eaten.json",  # unknown reason
        "app-1/g000002/generation-after-g1-0000000000000001.json",
        "app-1/g000002/notes.json",
        "app-1/g000002/../generation-first.json",
    ],
)
def test_malformed_markers_are_refused(suffix: str) -> None:
    """A marker name outside its grammar is refused like a bad chunk name."""
    with pytest.raises(InvalidObjectName):
        objectnames.parse_object_suffix(suffix)
