"""Pure chunk arithmetic: source ids, cut points, deterministic gzip."""

from __future__ import annotations

import gzip

from hypothesis import given
from hypothesis import strategies as st

from agent.chunking import CutPolicy, compress, cut_length, object_suffix, source_id
from keysvc.wire.objectnames import parse_suffix

POLICY = CutPolicy(chunk_bytes=100, chunk_seconds=2.0, partial_line_seconds=5.0)


def test_source_id_is_a_readable_slug_plus_hash() -> None:
    """A path becomes its slug plus 8 hex digits of the SHA-256 of the full path."""
    assert source_id("/var/log/cloud-init-output.log") == "var-log-cloud-init-output.log-cfeaa584"
    assert source_id("journal:kubelet").startswith("journal-kubelet-")


def test_paths_that_slug_alike_get_different_ids() -> None:
    """/a b and /a_b both slug to a-b but keep distinct ids."""
    assert source_id("/x/a b.log") != source_id("/x/a?b.log")


@given(st.text(min_size=1, max_size=400))
def test_any_source_spec_yields_a_valid_object_name(spec: str) -> None:
    """Whatever the path (unicode, dots, slashes, very long), the suffix fits keysvc's grammar."""
    name = parse_suffix(object_suffix(source_id(spec), 1, 0, 10))
    assert ".." not in name.source
    assert (name.stream, name.start, name.end) == ("g000001", 0, 10)


def test_full_block_cuts_at_last_newline_in_second_half() -> None:
    """A full block ends after its last newline when that lies in the second half."""
    block = b"a" * 70 + b"\n" + b"b" * 29
    assert cut_length(block, POLICY, waited=0, quiet=0, final=False) == 71


def test_full_block_without_late_newline_is_cut_at_size() -> None:
    """A 10 MB line without newline is shipped in chunk_bytes pieces, not held back."""
    assert cut_length(b"x" * 100, POLICY, waited=0, quiet=0, final=False) == 100
    assert cut_length(b"\n" + b"x" * 99, POLICY, waited=0, quiet=0, final=False) == 100


def test_young_data_waits_and_old_data_is_cut_at_newline() -> None:
    """Below the size limit, data is cut only once it has waited chunk_seconds, after the last newline."""
    block = b"one\ntwo\npart"
    assert cut_length(block, POLICY, waited=1.9, quiet=0, final=False) == 0
    assert cut_length(block, POLICY, waited=2.0, quiet=0, final=False) == 8


def test_partial_line_ships_once_quiet_or_final() -> None:
    """A first line without newline is shipped after partial_line_seconds of quiet, or at the final flush."""
    assert cut_length(b"no newline", POLICY, waited=9, quiet=4.9, final=False) == 0
    assert cut_length(b"no newline", POLICY, waited=9, quiet=5.0, final=False) == 10
    assert cut_length(b"no newline", POLICY, waited=0, quiet=0, final=True) == 10
    assert cut_length(b"", POLICY, waited=99, quiet=99, final=True) == 0


def test_compression_is_deterministic_and_round_trips() -> None:
    """The same bytes always give the same gzip object, which decompresses to them."""
    data = bytes(range(256)) * 100
    assert compress(data, 6) == compress(data, 6)
    assert gzip.decompress(compress(data, 1)) == data
