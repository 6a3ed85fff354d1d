"""Same-length masking: secrets disappear, offsets stay, and chunk boundaries change nothing."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.redaction import CONTEXT, find_secrets, mask, redact
from keysvc.wire import keyformat
from keysvc.wire.sessionformat import mint_session

KEY = keyformat.mint().key
# The armour lines are assembled at run time so that no private-key block, even this fake one, is
# committed where secret scanners would flag it.
RSA_LABEL = b"RSA " + b"PRIVATE KEY"
BEGIN_RSA = b"-----BEGIN " + RSA_LABEL + b"-----\n"
END_RSA = b"-----END " + RSA_LABEL + b"-----"
BEGIN_PKCS8 = b"-----BEGIN " + b"PRIVATE KEY" + b"-----\n"
PEM = BEGIN_RSA + b"MIIEowIBAAKCAQEAx4Uu\nQ2xvdWQtaW5pdA==\n" + END_RSA + b"\n"
TEXT = (
    b"cloud-init: key=" + KEY.encode() + b" done\n"
    b"export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
    b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    b"curl -H 'Authorization: Bearer eyJhbGciOi.short' https://x\n" + PEM + b"the end\n"
)


def whole(data: bytes, own: bytes | None = None) -> bytes:
    """Redact a buffer as one chunk with no outside context."""
    return redact(data, 0, len(data), own)


def test_every_kind_of_secret_is_masked_with_the_same_length() -> None:
    """Keys, AWS ids and secrets, bearer tokens and PEM bodies become stars; length and lines stay."""
    out = whole(TEXT)
    assert len(out) == len(TEXT)
    assert out.count(b"\n") == TEXT.count(b"\n")
    for secret in (
        KEY[22:].encode(),
        b"IOSFODNN7EXAMPLE",
        b"wJalrXUtnFEMI/K7MDENG",
        b"eyJhbGciOi.short",
        b"MIIEowIB",
    ):
        assert secret not in out
    assert KEY[:22].encode() in out  # the public key id stays visible
    assert b"AKIA****************" in out
    assert BEGIN_RSA in out
    assert END_RSA in out


def test_own_key_is_masked_even_without_a_word_boundary() -> None:
    """The agent's own key is found as a literal, even glued to more base32 letters."""
    data = b"x" + KEY.encode() + b"abc\n"
    assert KEY[22:].encode() not in whole(data, KEY.encode())


def test_plain_text_is_untouched() -> None:
    """Ordinary log lines, binary and ANSI escapes come out byte for byte."""
    data = b"Bearer of news\n\x1b[31mred\x1b[0m \xff\xfe\x00 AKIA short\n"
    assert whole(data) == data


@given(st.integers(min_value=0, max_value=len(TEXT)))
def test_a_chunk_boundary_anywhere_changes_nothing(cut: int) -> None:
    """Redacting two chunks in context gives exactly the bytes of redacting the whole."""
    left = redact(TEXT, 0, cut)
    right = redact(TEXT, cut, len(TEXT))
    assert left + right == whole(TEXT)


@given(st.integers(min_value=1, max_value=len(TEXT)))
def test_data_cut_off_at_the_end_fails_closed(end: int) -> None:
    """When a secret runs into the end of what is written so far, its visible part is masked."""
    out = whole(TEXT[:end])
    final = whole(TEXT)
    for start, stop in find_secrets(TEXT):
        if start < end:
            visible = out[start : min(stop, end)]
            assert visible == final[start : min(stop, end)]


def test_pem_without_end_is_masked_to_the_end() -> None:
    """An unterminated private-key block masks everything after its BEGIN line."""
    data = BEGIN_PKCS8 + b"AAAA\nBBBB"
    assert whole(data) == BEGIN_PKCS8 + b"****\n****"


def test_mask_keeps_line_breaks() -> None:
    """Masking a span that holds CR and LF keeps them."""
    assert mask(b"ab\r\ncd", [(0, 6)]) == b"**\r\n**"


#: Every key, even glued to more base32 letters (KEY_PATTERN's look-ahead would skip those).
KEY_SHAPE = re.compile(rb"nlk1_[a-z2-7]{16}_[a-z2-7]{39}")


def test_a_key_glued_to_more_letters_is_still_masked() -> None:
    """Two keys back to back, or a key followed by letters, lose their secrets and keep their ids."""
    other = keyformat.mint().key.encode()
    data = other + other + b"abc\n"
    out = whole(data)
    assert out == other[:22] + b"*" * 39 + other[:22] + b"*" * 39 + b"abc\n"


def ship(data: bytes, writes: list[int], cuts: list[int], own: bytes | None = None) -> bytes:
    """Redact ``data`` as the runner does: each chunk is cut when the file ends at the first write
    boundary at or after it, so its context ahead stops there (the rest is not written yet)."""
    ends = sorted({*cuts, len(data)})
    sizes = sorted({*writes, len(data)})
    out, start = [], 0
    for end in ends:
        size = next(size for size in sizes if size >= end)
        lo = max(0, start - CONTEXT)
        window = data[lo : min(size, end + CONTEXT)]
        out.append(redact(window, start - lo, end - lo, own))
        start = end
    return b"".join(out)


def assert_safe(data: bytes, shipped: bytes) -> None:
    """Every byte a whole-file redaction masks is masked, and every key's public id stays visible."""
    final = whole(data)
    assert len(shipped) == len(data)
    for start, stop in find_secrets(data):
        assert set(shipped[start:stop]) <= {ord("*"), ord("\r"), ord("\n")}, (start, stop)
    for match in KEY_SHAPE.finditer(data):
        start = match.start()
        assert shipped[start : start + 22] == data[start : start + 22], "the key id must stay visible"
        assert set(shipped[start + 22 : match.end()]) == {ord("*")}, "the secret must be masked"
    assert final.count(b"*") <= shipped.count(b"*")


def test_a_key_split_across_two_writes_keeps_its_id_at_every_offset() -> None:
    """For every write split and every chunk cut up to it, the id stays and the secret never shows."""
    line = b"token " + KEY.encode() + b" ok\n"
    for split in range(len(line) + 1):
        for cut in range(split + 1):
            shipped = ship(line, [split], [cut] if cut else [])
            assert_safe(line, shipped)
            assert KEY[:22].encode() in shipped, (split, cut)
            assert KEY[22:30].encode() not in shipped


def test_the_own_key_split_across_writes_keeps_its_id_too() -> None:
    """The agent's own key, split at any offset, is masked after its id and only there."""
    line = b"x" + KEY.encode() + b"\n"
    for split in range(len(line) + 1):
        shipped = ship(line, [split], [split] if 0 < split < len(line) else [], KEY.encode())
        assert shipped[1:23] == KEY[:22].encode(), split
        assert set(shipped[23 : 1 + len(KEY)]) == {ord("*")}, split


PIECES = st.sampled_from(
    [
        b"cloud-init ok\n",
        b"key=",
        KEY.encode(),
        keyformat.mint().key.encode(),
        b"AKIAIOSFODNN7EXAMPLE",
        b"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        b"Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123\n",
        b" ",
        b"\n",
        b"\xff\x00",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=12), st.data())
def test_random_writes_and_cuts_never_leak_and_keep_key_ids(pieces: list[bytes], draw: st.DataObject) -> None:
    """Any text of secrets and filler, written in any pieces and cut anywhere, is masked safely."""
    data = b"".join(pieces)
    offsets = st.lists(st.integers(min_value=0, max_value=len(data)), max_size=6)
    writes, cuts = draw.draw(offsets), draw.draw(offsets)
    shipped = ship(data, writes, [cut for cut in cuts if cut > 0], KEY.encode())
    assert_safe(data, shipped)


def test_a_session_credential_is_masked_like_a_key() -> None:
    """An nls1_ session in shipped bytes keeps its public part and loses its secret, same length."""
    session = mint_session("abcdefghijklmnop").session.encode()
    data = b"leaked " + session + b" here\n"
    masked = redact(data, 0, len(data))
    assert len(masked) == len(data)
    assert session not in masked
    assert masked.startswith(b"leaked nls1_abcdefghijklmnop_*")
