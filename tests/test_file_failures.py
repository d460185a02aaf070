"""Issue 11, items 4–6 at the file level: odd names and file systems are one error line each and
the batch goes on; SIGTERM leaves no partial file; stale partials of ours are removed; a damaged
ColorMatrix is not a crash; damaged EXIF entries are not copied."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_helpers import small_tmpfs
from fuzz_dng import ifd_entries
from helpers import file_sha256, finished_outputs
from lowlight_raw.cli import main
from lowlight_raw.files.atomic import remove_stale_temporaries
from lowlight_raw.files.metadata import is_well_formed
from lowlight_raw.files.raw import read_raw


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_a_read_only_output_folder_is_one_line_per_file(make_dng, tiny_weights, tmp_path, capsys):
    sources = [make_dng("a.dng"), make_dng("b.dng")]
    with small_tmpfs(tmp_path / "ro") as folder:
        (folder / "out").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        for out in (folder / "out", folder / "new"):  # an existing read-only folder, one that cannot be made
            code = main(["enhance", "-q", "--model", str(tiny_weights), "-o", str(out), *map(str, sources)])
            errors = _errors(capsys.readouterr().err)
            assert code == 1 and len(errors) == 2, errors
            assert all("Read-only file system" in line for line in errors)
            assert [line.split(": ")[1] for line in errors] != []
        assert sorted(p.name for p in folder.iterdir()) == ["out"] and list((folder / "out").iterdir()) == []


def test_overlong_and_non_utf8_names_fail_alone_or_work(make_dng, tiny_weights, tmp_path, capsys):
    long = make_dng("x" * 245 + ".dng")  # a legal name whose output name would not be
    odd = make_dng("plain.dng").rename(tmp_path / os.fsdecode(b"caf\xe9 \xff.dng"))  # Latin-1 bytes
    good = make_dng("good.dng")
    before = {path: file_sha256(path) for path in (long, odd, good)}
    out = tmp_path / "out"
    code = main(["enhance", "-q", "--model", str(tiny_weights), "-o", str(out), str(long), str(odd), str(good)])
    captured = capsys.readouterr()
    errors = _errors(captured.err)
    assert code == 1 and len(errors) == 1 and "longer than 255 bytes" in errors[0] and "xxxx" in errors[0]
    assert finished_outputs(out) == sorted([os.fsdecode(b"caf\xe9 \xff_lowlight.dng"), "good_lowlight.dng"])
    assert "caf\\xe9 \\xff.dng → " in captured.out  # shown, not a UnicodeEncodeError
    assert all(file_sha256(path) == digest for path, digest in before.items())


def _set_entry(path: Path, tag: int, kind: int, count: int) -> None:
    """Damage ``path``'s IFD entry ``tag`` in place: give it type ``kind`` and ``count`` values."""
    data = bytearray(path.read_bytes())
    for entry in ifd_entries(bytes(data)):
        if struct.unpack_from("<H", data, entry)[0] == tag:
            struct.pack_into("<HI", data, entry + 2, kind, count)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tag, kind, count", [(50778, 3, 2), (50778, 5, 1), (50721, 0, 9), (50721, 12, 0xFFFF),
                                             (50721, 2, 1), (50721, 10, 2)])
def test_a_damaged_color_matrix_is_not_a_crash(make_dng, tag, kind, count):
    source = make_dng()
    _set_entry(source, tag, kind, count)  # ColorMatrix1 or its CalibrationIlluminant1
    photo = read_raw(source)  # no TypeError/IndexError: the matrix counts as absent (or is read)
    assert photo.color.cam_xyz.shape == (3, 3)


def test_only_well_formed_exif_entries_are_copied():
    assert is_well_formed("Photo", 0x829D, 5, 1)  # FNumber: one RATIONAL
    assert is_well_formed("Photo", 0x8827, 4, 1)  # ISO as LONG instead of SHORT: still an integer
    assert is_well_formed("Image", 0x2BDD, 7, 3)  # a tag EXIF does not define: its type is its own
    assert not is_well_formed("Image", 0x013B, 0, 1)  # "Bad format (0)"
    assert not is_well_formed("GPSInfo", 0x0002, 0xFFFF, 3)  # a type TIFF does not have
    assert not is_well_formed("GPSInfo", 0x0004, 5, 0)  # no values
    assert not is_well_formed("GPSInfo", 0x0001, 1, 2)  # LatitudeRef as bytes
    assert not is_well_formed("GPSInfo", 0x0000, 1, 1)  # VersionID with 1 of its 4 bytes


def test_sigterm_during_writes_leaves_no_partial_file(make_dng, tiny_weights, tmp_path):
    sources = [make_dng("big.dng", height=1200, width=1600)] * 20
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "lowlight_raw.cli", "enhance", "-q", "--format", "tiff",
                                "--model", str(tiny_weights), "-o", str(out), *map(str, sources)],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(p.name.endswith(".tmp") for p in out.iterdir()):  # a file is being written now
        assert process.poll() is None and time.monotonic() < deadline, "no write seen"
        time.sleep(0.002)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 130
    assert "interrupted" in process.stderr.read()
    assert len(finished_outputs(out)) < len(sources)  # (asserts no partial file is left)


def test_stale_temporaries_of_dead_writers_are_removed(make_dng, tiny_weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])  # a pid whose process is gone
    dead.wait()
    stale = out / f".shot_lowlight.dng.{dead.pid}.0123abcd.tmp"
    live = out / f".shot_lowlight.dng.{os.getpid()}.0123abcd.tmp"  # a writer still at work
    foreign = out / ".notes.1.x.tmp"  # not our naming
    for path in (stale, live, foreign):
        path.write_bytes(b"half")
    assert remove_stale_temporaries(out) == [stale]
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, foreign.name])
    stale.write_bytes(b"half")
    assert main(["enhance", "-q", "--model", str(tiny_weights), "-o", str(out), str(make_dng())]) == 0
    assert not stale.exists() and live.exists() and foreign.exists()
