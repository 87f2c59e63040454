"""Durable state: atomic writes, loading, refusing broken files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hierclust.core.state import PersistentState
from hierclust.runtime.state import StateFileError, load_state, save_state


def test_round_trip_and_no_temp_left(tmp_path: Path) -> None:
    path = tmp_path / "cn1.json"
    assert load_state(path) is None
    saved = PersistentState(3, ((0, 7, 2), (4, 1, -1)))
    save_state(path, saved)
    assert load_state(path) == saved
    assert [p.name for p in tmp_path.iterdir()] == ["cn1.json"]


def test_a_crash_before_the_rename_leaves_the_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cn1.json"
    save_state(path, PersistentState(1, ((0, 1, 0),)))
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def crash(src: str, dst: str) -> None:
        calls.append("replace")
        raise OSError("power lost")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_state(path, PersistentState(2, ((0, 2, 1),)))
    assert calls == ["fsync", "replace"], "data is fsync'd before the rename"
    assert load_state(path) == PersistentState(1, ((0, 1, 0),))


def test_broken_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cn1.json"
    path.write_text('{"version": 1, "incarnation": -4, "votes": []}')
    with pytest.raises(StateFileError, match="cn1.json: incarnation"):
        load_state(path)
    path.write_text("{nope")
    with pytest.raises(StateFileError, match="not JSON"):
        load_state(path)
