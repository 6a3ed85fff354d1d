"""Same-length masking of secrets in shipped log bytes. Pure: bytes in, bytes out.

Every secret found is overwritten byte for byte with ``*`` (line breaks inside it are kept), so an
object's byte range stays in the *original file's* coordinates: offset N in the bucket is offset N
on the node, and only the masked bytes differ. What is masked:

- the agent's own key, any ``nlk1_`` key and any ``nls1_`` session (:data:`keysvc.wire.KEY_PATTERN`,
  even glued to more base32 letters): the secret part after ``nlk1_<key id>_`` (the key id is
  public and tells the operator which key leaked);
- AWS access key ids (``AKIA...``, ``ASIA...`` and the other IAM prefixes): the 16 characters after
  the prefix;
- ``aws_secret_access_key = ...`` assignments (``=`` or ``:``, quoted or not, any case): the value;
- ``Authorization: Bearer <token>`` (any case, header or JSON style), and any ``Bearer <token>`` whose
  token is 20+ characters: the token;
- PEM private-key blocks (``-----BEGIN ... PRIVATE KEY-----`` to the matching END): the body.

Chunk boundaries. A secret may straddle two chunks, so each chunk is redacted *in context*: the
scanner sees up to :data:`CONTEXT` bytes before and after the chunk (read back from the source file),
and only the chunk's own slice is kept. Both chunks then see the whole secret and mask their halves.
Where the context ends at the current end of the file (the rest is not written yet), matching fails
closed: a key, access key id, bearer token or secret value that runs into the end of the data is
masked to the end, and a PEM block without its END line is masked to the end. A key cut short keeps
its public ``nlk1_<key id>_`` part visible, as a whole key does: only the secret after it can be
secret, and it is masked to the end of the data. The runner also prefers
to cut chunks after a newline, so single-line secrets rarely reach a chunk's end at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from keysvc.wire import CHECKSUM_CHARS, KEY_ID_CHARS, SECRET_CHARS

#: Bytes of context read on each side of a chunk; a PEM block longer than this could escape.
CONTEXT = 64 * 1024

_MASK_TABLE = bytes(b if b in b"\r\n" else ord("*") for b in range(256))
_SECRET_LEN = SECRET_CHARS + CHECKSUM_CHARS
# No look-ahead (unlike KEY_PATTERN): a key glued to more letters is still a key to mask.
_KEY = re.compile(rb"nl[ks]1_[a-z2-7]{%d}_[a-z2-7]{%d}" % (KEY_ID_CHARS, _SECRET_LEN))
# A proper prefix of a key at the very end of the data (the rest is not written yet).
_KEY_PARTIAL_AT_END = re.compile(
    rb"nl[ks]1_(?:[a-z2-7]{0,%d}|[a-z2-7]{%d}_[a-z2-7]{0,%d})\Z"
    % (KEY_ID_CHARS, KEY_ID_CHARS, _SECRET_LEN - 1)
)
_KEY_PUBLIC_PART = len("nlk1_") + 16 + 1
_AWS_PREFIXES = (
    b"AKIA",
    b"ASIA",
    b"ABIA",
    b"ACCA",
    b"AGPA",
    b"AIDA",
    b"AIPA",
    b"ANPA",
    b"ANVA",
    b"APKA",
    b"AROA",
)
_AWS_QUICK = re.compile(rb"A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|PKA|ROA)")
_AWS_ID = re.compile(
    rb"(?<![A-Z0-9])(?:" + b"|".join(_AWS_PREFIXES) + rb")([A-Z0-9]{16}(?![A-Z0-9])|[A-Z0-9]{0,15}\Z)"
)
_AWS_SECRET = re.compile(rb"aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]+)", re.IGNORECASE)
_AUTH_BEARER = re.compile(rb"authorization[\"']?\s*[:=]\s*[\"']?bearer\s+([^\s\"',;]+)", re.IGNORECASE)
_BEARER = re.compile(rb"\bbearer\s+([A-Za-z0-9._~+/-]{20,}=*|[A-Za-z0-9._~+/-]+=*\Z)", re.IGNORECASE)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")
_PEM_END = re.compile(rb"-----END [A-Z0-9 ]*PRIVATE KEY-----")


def _group_spans(pattern: re.Pattern[bytes], data: bytes) -> Iterator[tuple[int, int]]:
    for match in pattern.finditer(data):
        yield match.span(1)


def _pem_spans(data: bytes) -> Iterator[tuple[int, int]]:
    position = 0
    while True:
        begin = _PEM_BEGIN.search(data, position)
        if begin is None:
            return
        end = _PEM_END.search(data, begin.end())
        stop = end.start() if end is not None else len(data)
        yield begin.end(), stop
        if end is None:
            return
        position = end.end()


def find_secrets(data: bytes, own_key: bytes | None = None) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` spans of ``data`` to mask, unsorted, possibly overlapping."""
    spans: list[tuple[int, int]] = []
    if own_key:
        position = data.find(own_key)
        while position >= 0:
            spans.append((position + _KEY_PUBLIC_PART, position + len(own_key)))
            position = data.find(own_key, position + 1)
    if b"nlk1_" in data or b"nls1_" in data:
        spans.extend((m.start() + _KEY_PUBLIC_PART, m.end()) for m in _KEY.finditer(data))
        tail = _KEY_PARTIAL_AT_END.search(data, max(0, len(data) - 64))
        if tail is not None:  # the rest is not written yet: mask the secret to the end, keep the id
            spans.append((tail.start() + _KEY_PUBLIC_PART, tail.end()))
    if _AWS_QUICK.search(data):
        spans.extend(_group_spans(_AWS_ID, data))
    lowered = data.lower()
    if b"secret" in lowered:
        spans.extend(_group_spans(_AWS_SECRET, data))
    if b"bearer" in lowered:
        spans.extend(_group_spans(_AUTH_BEARER, data))
        spans.extend(_group_spans(_BEARER, data))
    if b"PRIVATE KEY-----" in data:
        spans.extend(_pem_spans(data))
    return [(start, end) for start, end in spans if end > start]


def mask(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    """Overwrite each span with ``*`` (keeping CR and LF), preserving the length."""
    if not spans:
        return data
    out = bytearray(data)
    for start, end in spans:
        out[start:end] = out[start:end].translate(_MASK_TABLE)
    return bytes(out)


def redact(window: bytes, lo: int, hi: int, own_key: bytes | None = None) -> bytes:
    """Return ``window[lo:hi]`` with every secret found anywhere in ``window`` masked.

    ``window`` is the chunk plus its context on both sides; ``lo``/``hi`` locate the chunk in it.
    The result always has length ``hi - lo``.
    """
    spans = [
        (max(start, lo) - lo, min(end, hi) - lo)
        for start, end in find_secrets(window, own_key)
        if start < hi and end > lo
    ]
    return mask(window[lo:hi], spans)
