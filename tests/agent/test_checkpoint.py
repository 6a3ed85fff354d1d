"""Durable state: atomic files, positions, intents with staged chunks, and refusing corrupt state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.checkpoint import Intent, JournalState, Position, StagedChunk, StateStore
from agent.errors import StateCorrupt


def make_intent(store: StateStore, bodies: list[bytes]) -> Intent:
    """Stage bodies as consecutive 10-byte chunks and build their intent."""
    chunks = []
    for index, body in enumerate(bodies):
        start, end = index * 10, index * 10 + 10
        staged, digest = store.stage("src-1", 1, start, end, body)
        chunks.append(
            StagedChunk(start, end, f"src-1/g000001/{start:016d}-{end:016d}.gz", staged, digest, 0, "fp")
        )
    return Intent("src-1", "/var/log/x", 1, 5, 7, tuple(chunks))


def test_position_round_trips(tmp_path: Path) -> None:
    """A saved position loads back equal; an unknown source has none."""
    store = StateStore(tmp_path).open()
    position = Position("src-1", "/var/log/x", 2, 1234, 5, 7, 1170, "ab" * 32)
    store.save_position(position)
    assert store.load_position("src-1") == position
    assert store.load_position("other") is None


def test_intent_round_trips_and_drops_with_its_staged_files(tmp_path: Path) -> None:
    """An intent loads back with its staged bytes verified; dropping it removes the staged files."""
    store = StateStore(tmp_path).open()
    intent = make_intent(store, [b"one", b"two"])
    store.save_intent(intent)
    assert store.all_intents() == [intent]
    assert store.read_staged(intent.chunks[1]) == b"two"
    store.drop_intent(intent)
    assert store.all_intents() == []
    assert list(store.staged.iterdir()) == []


def test_staged_files_without_an_intent_are_removed_at_open(tmp_path: Path) -> None:
    """A crash between staging and the intent leaves orphans, which the next open deletes."""
    store = StateStore(tmp_path).open()
    store.stage("src-1", 1, 0, 10, b"orphan")
    kept = make_intent(store, [b"kept"])
    store.save_intent(kept)
    StateStore(tmp_path).open()
    assert [p.name for p in store.staged.iterdir()] == [kept.chunks[0].staged]


def test_corrupt_position_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Garbage in a position file raises StateCorrupt that names the file; nothing is guessed."""
    store = StateStore(tmp_path).open()
    (store.positions / "src-1.json").write_bytes(b"{not json")
    with pytest.raises(StateCorrupt, match=r"src-1\.json"):
        store.load_position("src-1")


def test_tampered_staged_chunk_is_refused(tmp_path: Path) -> None:
    """A staged chunk whose bytes no longer match the intent's SHA-256 is refused at load."""
    store = StateStore(tmp_path).open()
    intent = make_intent(store, [b"one"])
    store.save_intent(intent)
    (store.staged / intent.chunks[0].staged).write_bytes(b"evil")
    with pytest.raises(StateCorrupt, match="does not match"):
        store.load_intent("src-1")


def test_missing_staged_chunk_is_refused(tmp_path: Path) -> None:
    """An intent whose staged file vanished is refused, not silently skipped."""
    store = StateStore(tmp_path).open()
    intent = make_intent(store, [b"one"])
    store.save_intent(intent)
    (store.staged / intent.chunks[0].staged).unlink()
    with pytest.raises(StateCorrupt, match="cannot be read"):
        store.load_intent("src-1")


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    """A state file from another format version is not reinterpreted."""
    store = StateStore(tmp_path).open()
    (store.journal / "j.json").write_text('{"version": 99, "cursor": "c", "spool_size": 1}')
    with pytest.raises(StateCorrupt, match="unknown format"):
        store.load_journal("j")


def test_journal_state_round_trips(tmp_path: Path) -> None:
    """A journald cursor and its spool size are saved together."""
    store = StateStore(tmp_path).open()
    store.save_journal("j", JournalState("s=abc;i=1", 42))
    assert store.load_journal("j") == JournalState("s=abc;i=1", 42)


@pytest.mark.parametrize(
    ("folder", "record"),
    [
        (
            "positions",
            {"source_id": "src-1", "path": "/x", "generation": 1, "offset": "5", "dev": 1, "ino": 1}
            | {"fp_start": 0, "fingerprint": "ab"},
        ),
        (
            "positions",
            {"source_id": "src-1", "path": "/x", "generation": True, "offset": 5, "dev": 1, "ino": 1}
            | {"fp_start": 0, "fingerprint": "ab"},
        ),
        (
            "positions",
            {"source_id": "src-1", "path": None, "generation": 1, "offset": 5, "dev": 1, "ino": 1}
            | {"fp_start": 0, "fingerprint": "ab"},
        ),
        ("intents", {"source_id": "src-1", "path": "/x", "generation": 1, "dev": 1, "ino": 1, "chunks": 7}),
        (
            "intents",
            {"source_id": "src-1", "path": "/x", "generation": 1, "dev": 1, "ino": 1}
            | {
                "chunks": [
                    {"start": None, "end": 10, "suffix": "s", "staged": "f", "sha256": "0", "fp_start": 0}
                    | {"fingerprint": "ab"}
                ]
            },
        ),
        (
            "intents",
            {"source_id": "src-1", "path": "/x", "generation": 1, "dev": 1, "ino": 1}
            | {
                "chunks": [
                    {"start": 0, "end": 10, "suffix": "s", "staged": "../positions/p.json", "sha256": "0"}
                    | {"fp_start": 0, "fingerprint": "ab"}
                ]
            },
        ),
        ("journal", {"cursor": {"a": 1}, "spool_size": 3}),
        ("journal", {"cursor": "c", "spool_size": 2.5}),
    ],
)
def test_wrong_types_in_state_files_are_refused_naming_the_file(
    tmp_path: Path, folder: str, record: dict[str, object]
) -> None:
    """A state file with a wrongly typed field is StateCorrupt naming it, not a crash; nothing is deleted."""
    store = StateStore(tmp_path).open()
    (store.positions / "p.json").write_text("keep")
    (tmp_path / folder / "src-1.json").write_text(json.dumps({"version": 1, **record}))
    load = {
        "positions": store.load_position,
        "intents": store.load_intent,
        "journal": store.load_journal,
    }[folder]
    with pytest.raises(StateCorrupt, match=r"src-1\.json"):
        load("src-1")
    if folder == "intents":
        with pytest.raises(StateCorrupt, match=r"src-1\.json"):
            StateStore(tmp_path).open()
    assert (store.positions / "p.json").read_text() == "keep"
