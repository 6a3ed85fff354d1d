"""Unit tests of agent.private_files: the agent's one atomic, private file writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.private_files import atomic_write


def test_atomic_write_replaces_whole_file_with_private_mode(tmp_path: Path) -> None:
    """atomic_write leaves the new content, mode 0600, and no temporary file behind."""
    target = tmp_path / "f.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_stale_loose_temporary_file_does_not_lend_its_mode(tmp_path: Path) -> None:
    """A world-readable temporary file left by a crash is rewritten 0600, not kept 0644."""
    target = tmp_path / "session.json"
    stale = tmp_path / ".session.json.tmp"
    stale.write_bytes(b"half-written")
    stale.chmod(0o644)
    atomic_write(target, b"secret-ish")
    assert target.read_bytes() == b"secret-ish"
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_symlink_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """A symlink planted at the temporary name fails the write and leaves the file it points to alone."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / ".f.json.tmp").symlink_to(victim)
    with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
        atomic_write(tmp_path / "f.json", b"new")
    assert victim.read_bytes() == b"untouched"
    assert not (tmp_path / "f.json").exists()
