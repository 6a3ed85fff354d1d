"""Reassembling a node's streams from chunk names: order, gaps, overlaps, bounded decompression."""

from __future__ import annotations

import gzip
import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from keysvc.core.logreader import NodeLogs, StreamCursor, check_sequence, decompress_chunk
from keysvc.wire.objectnames import ChunkName, MarkerName, gap_suffix, generation_suffix, parse_marker


def chunk(start: int, end: int, source: str = "syslog", stream: str = "g000001") -> ChunkName:
    """A chunk name."""
    return ChunkName(source, stream, start, end)


def spans(
    cursor: StreamCursor, now: float = 0.0, gap_wait: float = 0.0
) -> tuple[list[tuple[int, int, int]], list[str]]:
    """Run ``ready`` and return (start, end, skip) per piece and the problem kinds."""
    pieces, problems = cursor.ready(now, gap_wait)
    return [(p.chunk.start, p.chunk.end, p.skip) for p in pieces], [p.kind for p in problems]


def test_chunks_in_any_order_come_out_in_offset_order() -> None:
    """Chunks offered shuffled are written in offset order, with no problem."""
    bounds = [0, 10, 25, 26, 100, 4096]
    chunks = [chunk(a, b) for a, b in itertools.pairwise(bounds)]
    random.Random(7).shuffle(chunks)  # noqa: S311 - a fixed test order, not a secret
    cursor = StreamCursor("syslog", "g000001")
    for item in chunks:
        cursor.add(item)
    pieces, problems = spans(cursor)
    assert pieces == [(0, 10, 0), (10, 25, 0), (25, 26, 0), (26, 100, 0), (100, 4096, 0)]
    assert problems == []
    assert cursor.offset == 4096


def test_gap_is_reported_with_its_byte_range() -> None:
    """A missing range is reported as a gap naming the bytes, and the next chunk is still written."""
    cursor = StreamCursor("syslog", "g000001")
    for item in (chunk(0, 10), chunk(20, 30)):
        cursor.add(item)
    pieces, problems = cursor.ready()
    assert [(p.chunk.start, p.skip) for p in pieces] == [(0, 0), (20, 0)]
    assert [(p.kind, p.start, p.end) for p in problems] == [("gap", 10, 20)]
    assert "GAP in syslog/g000001 bytes 10-20 (10 bytes)" in problems[0].describe()


def test_missing_first_bytes_are_a_gap() -> None:
    """A stream whose first object does not start at 0 has a gap at its beginning."""
    cursor = StreamCursor("syslog", "g000001")
    cursor.add(chunk(5, 9))
    _, problems = spans(cursor)
    assert problems == ["gap"]


def test_partial_overlap_is_reported_and_written_once() -> None:
    """An object repeating bytes already written is reported and written from where the last one ended."""
    cursor = StreamCursor("syslog", "g000001")
    for item in (chunk(0, 10), chunk(8, 15)):
        cursor.add(item)
    pieces, problems = cursor.ready()
    assert [(p.chunk.start, p.skip) for p in pieces] == [(0, 0), (8, 2)]
    assert [(p.kind, p.start, p.end) for p in problems] == [("overlap", 8, 10)]


def test_contained_overlap_is_skipped() -> None:
    """An object wholly inside bytes already written is reported and not written at all."""
    cursor = StreamCursor("syslog", "g000001")
    for item in (chunk(0, 10), chunk(2, 5), chunk(10, 12)):
        cursor.add(item)
    pieces, problems = spans(cursor)
    assert pieces == [(0, 10, 0), (10, 12, 0)]
    assert problems == ["overlap"]


def test_follow_waits_for_a_gap_before_reporting_it() -> None:
    """With a gap wait, a gap holds later chunks back until the missing one lands or the wait ends."""
    cursor = StreamCursor("syslog", "g000001")
    cursor.add(chunk(0, 10))
    cursor.add(chunk(20, 30))
    assert spans(cursor, now=100.0, gap_wait=5.0) == ([(0, 10, 0)], [])
    assert cursor.waiting
    assert spans(cursor, now=103.0, gap_wait=5.0) == ([], [])
    cursor.add(chunk(10, 20))
    assert spans(cursor, now=104.0, gap_wait=5.0) == ([(10, 20, 0), (20, 30, 0)], [])
    cursor.add(chunk(40, 50))
    assert spans(cursor, now=110.0, gap_wait=5.0) == ([], [])
    assert spans(cursor, now=115.0, gap_wait=5.0) == ([(40, 50, 0)], ["gap"])


def test_chunks_seen_again_are_not_written_twice() -> None:
    """Listing the same objects on every poll writes each one once."""
    cursor = StreamCursor("syslog", "g000001")
    cursor.add(chunk(0, 10))
    assert spans(cursor)[0] == [(0, 10, 0)]
    cursor.add(chunk(0, 10))
    cursor.add(chunk(10, 11))
    assert spans(cursor) == ([(10, 11, 0)], [])


def test_node_logs_orders_streams_by_source_then_generation() -> None:
    """Streams come out sorted by source and generation, optionally for one source only."""
    logs = NodeLogs()
    logs.add([chunk(0, 1, "b", "g000002"), chunk(0, 1, "a", "g000001"), chunk(0, 1, "b", "g000001")])
    assert [(c.source, c.stream) for c in logs.streams()] == [
        ("a", "g000001"),
        ("b", "g000001"),
        ("b", "g000002"),
    ]
    assert [(c.source, c.stream) for c in logs.streams("b")] == [("b", "g000001"), ("b", "g000002")]


def test_decompress_returns_the_exact_bytes() -> None:
    """A well-formed object decompresses to exactly the bytes its name announces, NULs and all."""
    data = b"line one\n\x00\xff\x1b[31mred\x1b[0m no newline"
    body, problem = decompress_chunk(chunk(100, 100 + len(data)), gzip.compress(data))
    assert body == data
    assert problem is None


def test_decompress_accepts_several_gzip_members() -> None:
    """Concatenated gzip members are one object's bytes, as gzip itself defines."""
    body, problem = decompress_chunk(chunk(0, 6), gzip.compress(b"abc") + gzip.compress(b"def"))
    assert (body, problem) == (b"abcdef", None)


def test_decompress_flags_a_wrong_length_without_inflating_everything() -> None:
    """An object that inflates to more than its name says is cut at the bound and reported."""
    bomb = gzip.compress(b"\x00" * 10_000_000)
    body, problem = decompress_chunk(chunk(0, 10), bomb)
    assert len(body) == 10
    assert problem is not None
    assert problem.kind == "bad-length"
    assert "more than 10" in problem.detail


def test_decompress_flags_short_truncated_and_invalid_objects() -> None:
    """Too few bytes, a truncated stream and non-gzip data are each reported as bad length."""
    short = decompress_chunk(chunk(0, 10), gzip.compress(b"12345"))[1]
    truncated = decompress_chunk(chunk(0, 1000), gzip.compress(bytes(range(256)) * 4)[:-12])[1]
    invalid = decompress_chunk(chunk(0, 10), b"not gzip at all")[1]
    assert short is not None
    assert "holds 5 bytes" in short.detail
    assert truncated is not None
    assert truncated.kind == "bad-length"
    assert invalid is not None
    assert "not valid gzip" in invalid.detail


@given(
    data=st.binary(min_size=1, max_size=400),
    cuts=st.sets(st.integers(min_value=1, max_value=399), max_size=12),
    dropped=st.sets(st.integers(min_value=0, max_value=12), max_size=3),
    order=st.randoms(use_true_random=False),
)
def test_reassembly_reports_exactly_the_missing_ranges(
    data: bytes, cuts: set[int], dropped: set[int], order: random.Random
) -> None:
    """Any tiling with chunks dropped: kept bytes come out in order, and the gaps are the dropped ranges."""
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    spans_all = list(itertools.pairwise(bounds))
    kept = [span for i, span in enumerate(spans_all) if i not in dropped]
    shuffled = kept[:]
    order.shuffle(shuffled)
    cursor = StreamCursor("s", "g000001")
    for start, end in shuffled:
        cursor.add(chunk(start, end, "s"))
    pieces, problems = cursor.ready()
    written = b"".join(data[p.chunk.start + p.skip : p.chunk.end] for p in pieces)
    assert written == b"".join(data[a:b] for a, b in kept)
    missing = [
        span for i, span in enumerate(spans_all) if i in dropped and any(k[0] >= span[1] for k in kept)
    ]
    merged: list[tuple[int, int]] = []
    for start, end in missing:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    assert [(p.start, p.end) for p in problems if p.kind == "gap"] == merged
    assert all(p.kind == "gap" for p in problems)


def _marker(suffix: str) -> MarkerName:
    return parse_marker(suffix)


def test_sequence_reports_recorded_gaps_missing_generations_and_short_tails() -> None:
    """Recorded gaps, a generation with no object, and one shorter than its successor says are problems."""
    markers = [
        _marker(generation_suffix("s", "g000001", None, None)),
        _marker(generation_suffix("s", "g000002", "g000001", 100)),
        _marker(generation_suffix("s", "g000004", "g000003", None)),
        _marker(gap_suffix("s", "g000004", 0, None, "unreadable")),
    ]
    problems, notes = check_sequence(markers, {("s", "g000001"): 60, ("s", "g000002"): 5})
    described = sorted(p.describe() for p in problems)
    assert [p.kind for p in sorted(problems, key=lambda p: p.kind)] == ["hole", "hole", "recorded-gap"]
    assert any("g000003 is missing" in text for text in described)
    assert any("HOLE in s/g000001: the bucket holds bytes 0-60" in text for text in described)
    assert any("GAP RECORDED in s/g000004" in text and "unreadable" in text for text in described)
    assert notes == []


def test_sequence_of_a_complete_source_is_clean_and_copytruncate_is_a_note() -> None:
    """Generations that all add up give no problem; a copytruncate boundary gives one note."""
    markers = [
        _marker(generation_suffix("s", "g000001", None, None)),
        _marker(generation_suffix("s", "g000002", "g000001", 60, copytruncated=True)),
        _marker(generation_suffix("s", "g000003", "g000002", 0)),
    ]
    problems, notes = check_sequence(markers, {("s", "g000001"): 60})
    assert problems == []
    assert len(notes) == 1
    assert "copytruncate" in notes[0]


def test_gap_record_accounts_for_the_missing_tail_it_names() -> None:
    """A tail the agent recorded as lost is reported once, as the recorded gap, not again as a hole."""
    markers = [
        _marker(gap_suffix("s", "g000001", 40, None, "deleted")),
        _marker(generation_suffix("s", "g000002", "g000001", None)),
    ]
    problems, _ = check_sequence(markers, {("s", "g000001"): 40, ("s", "g000002"): 9})
    assert [p.kind for p in problems] == ["recorded-gap"]
