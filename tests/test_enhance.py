"""End to end: real DNG fixtures through the engine and the command line, to all three formats."""

import subprocess
import sys

import exifread
import numpy as np
import pytest
import tifffile

from helpers import decode_output, file_sha256, finished_outputs, patch_means
from lowlight_raw.cli import main
from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.errors import Cancelled
from lowlight_raw.layouts.bayer import PATTERNS


@pytest.fixture(scope="module")
def enhancer(tiny_weights):
    return Enhancer(tiny_weights, device="cpu")


@pytest.mark.parametrize("fmt", ["dng", "tiff", "jpeg"])
def test_all_formats_keep_size_colour_and_exif(make_dng, enhancer, fmt, tmp_path):
    source = make_dng(height=90, width=122, ratio=50)
    before = file_sha256(source)
    result = enhancer.enhance(source, EnhanceOptions(output_format=fmt, output_dir=tmp_path / "out"))
    assert result.output == tmp_path / "out" / f"dark_lowlight.{ {'dng': 'dng', 'tiff': 'tif', 'jpeg': 'jpg'}[fmt] }"
    assert file_sha256(source) == before
    rgb = decode_output(result.output, fmt)
    assert rgb.shape == (90, 122, 3)
    red, green, blue, grey = patch_means(rgb)
    assert red[0] > 2 * max(red[1], red[2]), red
    assert green[1] > 1.5 * max(green[0], green[2]), green
    assert blue[2] > 1.5 * max(blue[0], blue[1]), blue
    assert np.ptp(grey) < 0.15 * grey.mean(), grey  # neutral stays neutral
    assert 0.1 < float(rgb.mean()) < 0.9  # brightened, not black, not blown
    with open(result.output, "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert str(tags["EXIF ISOSpeedRatings"]) == "6400"
    assert str(tags["EXIF LensModel"]) == "FE 35mm F2.8 ZA"
    assert str(tags["GPS GPSLatitudeRef"]) == "N"
    assert str(tags["EXIF DateTimeOriginal"]) == "2026:11:01 21:14:05"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("margins", [(0, 0, 0, 0), (1, 3, 0, 1)])
def test_red_stays_red_for_every_phase_and_odd_crop(make_dng, enhancer, pattern, margins, tmp_path):
    source = make_dng(f"{pattern}.dng", height=67, width=91, pattern=pattern, margins=margins, ratio=20)
    out = enhancer.enhance(source, EnhanceOptions(output_format="tiff", output_dir=tmp_path)).output
    rgb = decode_output(out, "tiff")
    red, green, blue, _ = patch_means(rgb)
    assert red[0] > 2 * max(red[1], red[2]) and blue[2] > 1.5 * max(blue[0], blue[1]), (red, blue)


def test_names_never_overwrite_unless_asked(make_dng, enhancer):
    source = make_dng()
    first = enhancer.enhance(source, EnhanceOptions(output_format="jpeg")).output
    second = enhancer.enhance(source, EnhanceOptions(output_format="jpeg")).output
    assert (first.name, second.name) == ("dark_lowlight.jpg", "dark_lowlight_1.jpg")
    stamp = first.stat().st_mtime_ns
    third = enhancer.enhance(source, EnhanceOptions(output_format="jpeg", overwrite=True)).output
    assert third == first and first.stat().st_mtime_ns >= stamp


def test_manual_ev_and_strength(make_dng, enhancer, tmp_path):
    source = make_dng(ratio=100)
    dim = enhancer.enhance(source, EnhanceOptions(output_format="tiff", ev=2.0, output_dir=tmp_path / "a"))
    bright = enhancer.enhance(source, EnhanceOptions(output_format="tiff", ev=6.0, output_dir=tmp_path / "b"))
    assert (dim.ev, bright.ev) == (2.0, 6.0)
    assert tifffile.imread(bright.output).mean() > 2 * tifffile.imread(dim.output).mean()
    naive = enhancer.enhance(source, EnhanceOptions(output_format="tiff", ev=6.0, strength=0.0, output_dir=tmp_path / "c"))
    assert naive.output.is_file()


@pytest.mark.parametrize("cancel_after_polls", [0, 1])
def test_cancel_leaves_nothing(make_dng, enhancer, tmp_path, cancel_after_polls):
    """Cancelled before the first tile, or after the last one (before writing): no output."""
    source = make_dng()
    polls = []

    def should_cancel():
        polls.append(1)
        return len(polls) > cancel_after_polls

    with pytest.raises(Cancelled):
        enhancer.enhance(source, EnhanceOptions(output_dir=tmp_path / "out"), should_cancel=should_cancel)
    assert finished_outputs(tmp_path / "out") == []


def test_bad_options_are_refused(make_dng, enhancer):
    with pytest.raises(ValueError, match="strength"):
        enhancer.enhance(make_dng(), EnhanceOptions(strength=1.5))
    with pytest.raises(ValueError, match="format"):
        enhancer.enhance(make_dng(), EnhanceOptions(output_format="png"))


def test_cli_batch_reports_each_failure_and_exit_code(make_dng, tiny_weights, tmp_path, capsys):
    good = make_dng("good.dng")
    bad = tmp_path / "broken.nef"
    bad.write_bytes(b"\x00" * 1000)
    code = main(["enhance", str(good), str(bad), str(tmp_path / "missing.cr2"), "--model", str(tiny_weights),
                 "-o", str(tmp_path / "out"), "--format", "jpeg", "-q"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "good_lowlight.jpg" in out and "EV +" in out
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 2
    assert "broken.nef: not a RAW file" in error_lines[0] and "missing.cr2: file not found" in error_lines[1]
    assert "1 enhanced, 2 failed" in err
    assert finished_outputs(tmp_path / "out") == ["good_lowlight.jpg"]


def test_cli_console_script_exit_codes(make_dng, tiny_weights, tmp_path):
    source = make_dng()
    exe = [sys.executable, "-m", "lowlight_raw.cli"]
    ok = subprocess.run([*exe, "enhance", str(source), "--model", str(tiny_weights), "--ev", "+5", "-q"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "dark_lowlight.dng").is_file()
    bad_weights = subprocess.run([*exe, "enhance", str(source), "--model", str(tmp_path / "nope.pt")],
                                 capture_output=True, text=True, timeout=120)
    assert bad_weights.returncode == 2 and bad_weights.stderr.strip().endswith("nope.pt: weight file not found")
    usage = subprocess.run([*exe, "enhance", str(source), "--strength", "3"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "between 0 and 1" in usage.stderr


@pytest.mark.parametrize("tool", ["train", "evaluate"])
def test_training_tools_are_subcommands(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([tool, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: lowlight-raw {tool}" in capsys.readouterr().out


def test_the_engine_pool_loads_each_weight_file_once_on_one_device(tiny_weights) -> None:
    """lowlight_raw.engine.EnginePool: what the daemon and each Dask worker keep warm."""
    from lowlight_raw.engine import EnginePool

    loaded = []
    pool = EnginePool("cpu", on_load=lambda model, engine: loaded.append((str(model), engine.card.name)))
    first = pool.engine(tiny_weights)
    assert pool.engine(str(tiny_weights)) is first and pool.engine(tiny_weights) is first
    fast = pool.engine("fast")
    assert fast is not first and fast.device == first.device == pool.device
    assert loaded == [(str(tiny_weights), first.card.name), ("fast", "lowlight-sid12")]
    assert sorted(pool.warm()) == sorted([first.card.name, "lowlight-sid12"])
