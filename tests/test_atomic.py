"""lowlight_raw.files.atomic.write_atomically: the one way weights, cards, state, caches, packages and
plots are written: whole or not at all, flushed to disk before they get their name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lowlight_raw.files import atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_bytes_and_text_replace_the_file_with_the_mode_given(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    assert atomic.write_atomically(path, '{"new": true}\n', mode=0o600) == path
    assert path.read_text() == '{"new": true}\n' and stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic.write_atomically(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01" and leftovers(tmp_path) == []


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"the last good weights")

    def half_then_fail(temp: Path) -> None:
        temp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"the last good weights" and leftovers(tmp_path) == []


def test_the_file_is_on_disk_before_it_gets_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plot.png"
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{descriptor}"), path.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.write_atomically(path, lambda temp: temp.write_bytes(b"\x89PNG..."))
    assert len(synced) == 1 and Path(synced[0][0]).name.startswith(".plot.png.") and synced[0][1] is False
    assert path.read_bytes() == b"\x89PNG..." and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_name_at_the_file_system_limit_is_written_too(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 245 + ".dng")  # 249 bytes: its temporary name must be shorter than ".NAME.PID…"
    atomic.write_atomically(path, b"raw")
    assert path.read_bytes() == b"raw" and leftovers(tmp_path) == []
    accented = tmp_path / ("é" * 120 + ".json")  # 245 bytes in UTF-8, cut inside a character for the temporary
    atomic.write_atomically(accented, "{}")
    assert accented.read_text() == "{}" and leftovers(tmp_path) == []
