"""The key wire format: shape, checksum, hashing and the scanner pattern."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from keysvc.wire import keyformat
from keysvc.wire.results import Failure, Reason, Success

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def reason(candidate: str) -> Reason | None:
    """The refusal reason of ``parse``, or None when it parses."""
    result = keyformat.parse(candidate)
    return result.reason if isinstance(result, Failure) else None


def test_minted_key_shape() -> None:
    """A minted key has the prefix, a 16-char id, 61 chars in all, and parses back to its id."""
    minted = keyformat.mint()
    assert minted.key.startswith("nlk1_")
    assert len(minted.key) == keyformat.KEY_LENGTH == 61
    assert minted.key.split("_")[1] == minted.key_id
    parsed = keyformat.parse(minted.key)
    assert isinstance(parsed, Success)
    assert parsed.value == minted
    assert keyformat.KEY_PATTERN.fullmatch(minted.key)


def test_keys_are_unique_and_carry_160_bits() -> None:
    """Secrets differ between mints and use the whole base32 alphabet."""
    keys = {keyformat.mint().key for _ in range(2000)}
    assert len(keys) == 2000
    secrets = "".join(k.split("_")[2][: keyformat.SECRET_CHARS] for k in keys)
    assert set(secrets) == set(ALPHABET)


def test_every_single_character_typo_is_caught() -> None:
    """Changing any one character of the secret or checksum is a bad checksum (or malformed), never a pass."""
    key = keyformat.mint().key
    start = len("nlk1_")
    for i in range(start, len(key)):
        if key[i] == "_":
            continue
        for char in ALPHABET:
            if char != key[i]:
                assert reason(key[:i] + char + key[i + 1 :]) in {Reason.BAD_CHECKSUM, Reason.MALFORMED}


def test_adjacent_transpositions_are_caught() -> None:
    """Swapping two neighbouring characters is caught by the checksum."""
    key = keyformat.mint().key
    for i in range(len("nlk1_"), len(key) - 1):
        swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
        if swapped != key:
            assert reason(swapped) in {Reason.BAD_CHECKSUM, Reason.MALFORMED}


@given(st.integers(min_value=0, max_value=60))
def test_truncated_keys_are_malformed(cut: int) -> None:
    """A key cut short anywhere is malformed, before any lookup."""
    key = keyformat.mint().key
    assert reason(key[:cut]) is Reason.MALFORMED


@given(st.text(max_size=80))
def test_arbitrary_text_never_parses(text: str) -> None:
    """Random text is refused without raising."""
    assert reason(text) is not None


def test_wrong_prefix_and_case_are_malformed() -> None:
    """Another prefix or upper case is malformed."""
    key = keyformat.mint().key
    assert reason("nlk2_" + key[5:]) is Reason.MALFORMED
    assert reason(key.upper()) is Reason.MALFORMED
    assert reason(key + "a") is Reason.MALFORMED


def test_key_hash_is_domain_separated_sha256() -> None:
    """The stored hash is SHA-256 over the domain prefix and the key, compared in constant time."""
    key = keyformat.mint().key
    digest = keyformat.key_hash(key)
    assert digest == hashlib.sha256(b"nodelogs/ingest-key/v1\x00" + key.encode()).digest()
    assert digest != hashlib.sha256(key.encode()).digest()
    assert keyformat.hash_matches(key, digest)
    assert not keyformat.hash_matches(keyformat.mint().key, digest)


def test_mint_with_given_id() -> None:
    """A key can be minted for a chosen id; a bad id is refused."""
    minted = keyformat.mint("aaaaaaaaaaaaaaaa")
    assert minted.key_id == "aaaaaaaaaaaaaaaa"
    try:
        keyformat.mint("AAAA")
    except ValueError:
        pass
    else:
        raise AssertionError("a bad key id was accepted")


def test_scanner_pattern_finds_keys_in_text() -> None:
    """KEY_PATTERN and looks_like_key find a key inside text but not a longer run."""
    key = keyformat.mint().key
    assert keyformat.looks_like_key(f"token={key}; next")
    assert keyformat.KEY_PATTERN.findall(f"a {key} b {key}") == [key, key]
    assert not keyformat.looks_like_key(key + "a")
    assert not keyformat.looks_like_key("nlk1_short")
