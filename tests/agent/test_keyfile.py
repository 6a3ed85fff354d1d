"""The key file: root-only, well-formed, removed when finished; the finished marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import keyfile
from agent.errors import KeyFileInsecure, KeyUnavailable
from agent.keyfile import finished_reason, mark_finished, read_key, remove_key
from keysvc.wire import keyformat


def write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write a key file with the given mode."""
    path.write_text(text)
    path.chmod(mode)
    return path


def test_reads_a_private_well_formed_key(tmp_path: Path) -> None:
    """A 0600 file holding a key (with a trailing newline) gives the key and its id."""
    minted = keyformat.mint()
    key = read_key(write_key(tmp_path / "key", minted.key + "\n"))
    assert (key.key_id, key.secret) == (minted.key_id, minted.key)
    assert minted.key not in repr(key)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_group_or_other_access_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    """Any group/other permission bit makes the agent refuse the file and say `chmod 600`."""
    minted = keyformat.mint()
    with pytest.raises(KeyFileInsecure, match="chmod 600") as info:
        read_key(write_key(tmp_path / "key", minted.key, mode))
    assert minted.key not in str(info.value)


def test_absent_key_is_unavailable(tmp_path: Path) -> None:
    """No key file means nothing to do (exit 12), not a crash."""
    with pytest.raises(KeyUnavailable):
        read_key(tmp_path / "missing")


def test_malformed_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A file with a broken checksum is refused and its content is not repeated."""
    key = keyformat.mint().key
    broken = key[:-1] + ("b" if key.endswith("a") else "a")  # always a different last character
    with pytest.raises(KeyFileInsecure) as info:
        read_key(write_key(tmp_path / "key", broken))
    assert broken not in str(info.value)


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    """The key file is opened without following a symlink."""
    target = write_key(tmp_path / "real", keyformat.mint().key)
    (tmp_path / "key").symlink_to(target)
    with pytest.raises(KeyFileInsecure):
        read_key(tmp_path / "key")


def test_finished_marker_is_per_key_and_durable(tmp_path: Path) -> None:
    """The marker stops the same key id (or any key when the file is gone) and not a new key."""
    mark_finished(tmp_path, "aaaaaaaaaaaaaaaa", "expired", 1.0)
    assert finished_reason(tmp_path, "aaaaaaaaaaaaaaaa") == "expired"
    assert finished_reason(tmp_path, None) == "expired"
    assert finished_reason(tmp_path, "bbbbbbbbbbbbbbbb") is None


def test_unreadable_marker_counts_as_finished(tmp_path: Path) -> None:
    """A damaged marker is read as "stop", the safe side."""
    (tmp_path / "finished.json").write_text("{")
    assert finished_reason(tmp_path, "aaaaaaaaaaaaaaaa") is not None


def test_remove_key_reports_whether_it_was_there(tmp_path: Path) -> None:
    """Removing the key twice is fine."""
    path = write_key(tmp_path / "key", "x")
    assert remove_key(path) is True
    assert remove_key(path) is False


def test_key_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A key file that another (non-root) user owns, and could rewrite, is refused."""
    path = write_key(tmp_path / "key", keyformat.mint().key)
    os.chown(path, 4242, 4242)
    with pytest.raises(KeyFileInsecure, match="owned by uid 4242"):
        read_key(path)


def test_identity_document_beside_the_key_is_read_or_absent(tmp_path: Path) -> None:
    """Both identity files present: read; either missing, empty or oversized: no document."""
    assert keyfile.read_identity(tmp_path) is None
    (tmp_path / keyfile.IDENTITY_DOCUMENT_FILE).write_text('{"instanceId": "i-0123456789abcdef0"}')
    assert keyfile.read_identity(tmp_path) is None
    (tmp_path / keyfile.IDENTITY_SIGNATURE_FILE).write_text("c2lnbmF0dXJl\n")
    assert keyfile.read_identity(tmp_path) == ('{"instanceId": "i-0123456789abcdef0"}', "c2lnbmF0dXJl")
    (tmp_path / keyfile.IDENTITY_SIGNATURE_FILE).write_text("")
    assert keyfile.read_identity(tmp_path) is None
    (tmp_path / keyfile.IDENTITY_SIGNATURE_FILE).write_text("x" * 5000)
    assert keyfile.read_identity(tmp_path) is None
