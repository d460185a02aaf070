"""lowlight_raw.files.atomic.write_atomically: the one way every file is written (weights, cards, state,
caches, packages, plots, the engine's outputs, a remote daemon's results): whole or not at all, flushed
to disk before it gets its name, an existing file replaced only where the placement says so."""

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


def test_new_never_replaces_a_file_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shot_lowlight.dng"
    assert atomic.write_atomically(path, b"first", placement="new") == path
    with pytest.raises(FileExistsError):
        atomic.write_atomically(path, b"second", placement="new")
    assert path.read_bytes() == b"first" and leftovers(tmp_path) == []


def test_a_file_that_appears_while_writing_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "shot_lowlight.jpg"

    def meanwhile_another_writer_finishes(temp: Path) -> None:
        temp.write_bytes(b"ours")
        path.write_bytes(b"theirs")

    with pytest.raises(FileExistsError):
        atomic.write_atomically(path, meanwhile_another_writer_finishes, placement="new")
    assert path.read_bytes() == b"theirs" and leftovers(tmp_path) == []


def test_numbered_takes_the_first_free_name(tmp_path: Path) -> None:
    path = tmp_path / "remote_lowlight.jpg"
    (tmp_path / "remote_lowlight.jpg").write_bytes(b"keep")
    (tmp_path / "remote_lowlight_1.jpg").write_bytes(b"keep too")
    assert atomic.write_atomically(path, b"new", placement="numbered") == tmp_path / "remote_lowlight_2.jpg"
    assert path.read_bytes() == b"keep" and (tmp_path / "remote_lowlight_2.jpg").read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_a_dead_writers_temporary_goes_at_the_next_write(tmp_path: Path) -> None:
    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    stale = tmp_path / f".weights.pt.{dead_pid}.0123abcd.tmp"
    live = tmp_path / f".weights.pt.{os.getpid()}.89abcdef.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    atomic.write_atomically(tmp_path / "card.json", "{}")
    assert leftovers(tmp_path) == [live.name]
