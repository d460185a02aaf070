"""Output writers: real DNG/TIFF/JPEG files read back by rawpy, tifffile, Pillow, exiftool, darktable."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import exiv2
import imageio.v3 as iio
import numpy as np
import pytest
import rawpy
import tifffile
from PIL import Image, ImageCms

from lowlight_raw.errors import LowlightError
from lowlight_raw.files import writers
from lowlight_raw.files.metadata import SOFTWARE, read_exif
from lowlight_raw.files.writers import OutputImage, linear_icc_profile, output_path_for, write_output
from lowlight_raw.pipeline.color import CameraColor, srgb_encode
from lowlight_raw.testing.synthetic import DEFAULT_CAM_XYZ, DngSpec, test_scene

HEIGHT, WIDTH = 90, 122
NEUTRAL = np.array(DngSpec().as_shot_neutral)
# Centres of test_scene's patches: red, green, blue, grey 0.3 (white balanced), in (row, col).
PATCHES = {"red": (22, 15), "green": (22, 45), "blue": (22, 75), "grey": (22, 105)}
GREY = 0.3


def patch(rgb: np.ndarray, name: str, radius: int = 4) -> np.ndarray:
    """Mean colour of a patch's centre."""
    row, col = PATCHES[name]
    return rgb[row - radius : row + radius, col - radius : col + radius].reshape(-1, 3).mean(axis=0)


def assert_colour_order(rgb: np.ndarray) -> None:
    """Red, green and blue patches are dominated by their own channel; the grey patch is neutral."""
    for index, name in enumerate(("red", "green", "blue")):
        mean = patch(rgb, name)
        others = np.delete(mean, index)
        assert mean[index] > 2 * others.max(), (name, mean)
    grey = patch(rgb, "grey")
    assert np.ptp(grey) < 0.05 * grey.max() + 2, grey


@pytest.fixture
def image(make_dng) -> OutputImage:
    """A clean test scene as the engine would hand it over, from a fixture DNG with EXIF/GPS."""
    source = make_dng("source.dng", height=HEIGHT, width=WIDTH)
    color = CameraColor(wb=1.0 / NEUTRAL, cam_xyz=DEFAULT_CAM_XYZ.copy())
    return OutputImage(test_scene(HEIGHT, WIDTH), color, 1, "Lowlight", "Synthetic Bayer", source, ev=5.0)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


# ---------------------------------------------------------------- naming and safety


def test_output_path_next_to_source_then_numbered_on_collision(tmp_path):
    source = tmp_path / "DSC01234.ARW"
    source.write_bytes(b"raw")
    first = output_path_for(source, "dng")
    assert first == tmp_path / "DSC01234_lowlight.dng"
    first.write_bytes(b"x")
    assert output_path_for(source, "dng") == tmp_path / "DSC01234_lowlight_1.dng"
    (tmp_path / "DSC01234_lowlight_1.dng").write_bytes(b"x")
    assert output_path_for(source, "dng") == tmp_path / "DSC01234_lowlight_2.dng"
    assert output_path_for(source, "dng", overwrite=True) == first
    assert output_path_for(source, "tiff") == tmp_path / "DSC01234_lowlight.tif"
    assert output_path_for(source, "jpeg", output_dir=tmp_path / "out") == tmp_path / "out" / "DSC01234_lowlight.jpg"
    with pytest.raises(ValueError, match="png"):
        output_path_for(source, "png")


def test_output_path_never_the_source_even_through_a_link(tmp_path):
    source = tmp_path / "shot.dng"
    source.write_bytes(b"raw")
    out = tmp_path / "out"
    out.mkdir()
    (out / "shot_lowlight.dng").symlink_to(source)
    assert output_path_for(source, "dng", out) == out / "shot_lowlight_1.dng"
    with pytest.raises(LowlightError, match="source"):
        output_path_for(source, "dng", out, overwrite=True)


def test_refuses_to_write_over_the_source(image):
    before = image.source.read_bytes()
    with pytest.raises(LowlightError) as err:
        write_output(image, image.source, "dng", overwrite=True)
    assert str(image.source) in str(err.value)
    assert image.source.read_bytes() == before
    assert leftovers(image.source.parent) == []


def test_no_overwrite_without_flag_and_overwrite_with_it(image, tmp_path):
    target = tmp_path / "taken.jpg"
    target.write_bytes(b"precious")
    with pytest.raises(LowlightError) as err:
        write_output(image, target, "jpeg")
    assert str(err.value) == f"{target}: already exists (use overwrite to replace it)"
    assert target.read_bytes() == b"precious"
    assert write_output(image, target, "jpeg", overwrite=True) == target
    assert target.read_bytes()[:2] == b"\xff\xd8"
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_no_temporary_file(image, tmp_path):
    # The final rename fails: the name is an existing folder.
    folder = tmp_path / "a_folder.dng"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(LowlightError) as err:
        write_output(image, folder, "dng", overwrite=True)
    assert str(folder) in str(err.value)
    assert folder.is_dir() and leftovers(tmp_path) == []
    with pytest.raises(LowlightError, match="output folder does not exist"):
        write_output(image, tmp_path / "missing" / "x.dng", "dng")


def test_failure_after_writing_began_removes_the_temporary_file(image, tmp_path, monkeypatch):
    def broken_pixels(*args, **kwargs):
        assert len(leftovers(tmp_path)) == 1  # the temporary file, its tags and metadata written
        raise RuntimeError("pixel step failed")

    def broken_copy(source, target, note, extra=None, dng_output=False, linear_source=False):
        assert Path(target).stat().st_size > 0  # the pixels were on disk
        raise RuntimeError("metadata step failed")

    monkeypatch.setattr(writers, "_quantise", broken_pixels)  # a DNG's and a TIFF's first strip
    for fmt in ("dng", "tiff"):
        target = tmp_path / f"out{writers.EXTENSIONS[fmt]}"
        with pytest.raises(RuntimeError, match="pixel step"):
            write_output(image, target, fmt)
        assert not target.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    monkeypatch.setattr(writers, "copy_metadata", broken_copy)  # a JPEG's metadata is added to the written file
    with pytest.raises(RuntimeError, match="metadata step"):
        write_output(image, tmp_path / "out.jpg", "jpeg")
    assert not (tmp_path / "out.jpg").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- DNG


def test_dng_opens_in_rawpy_with_size_and_colour_order(image, tmp_path):
    path = write_output(image, tmp_path / "out.dng", "dng")
    assert leftovers(tmp_path) == []
    with rawpy.imread(str(path)) as raw:
        assert (raw.sizes.height, raw.sizes.width) == (HEIGHT, WIDTH)
        assert raw.num_colors == 3
        rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16, user_flip=0)
    assert rgb.shape == (HEIGHT, WIDTH, 3)
    assert_colour_order(rgb.astype(np.float64))


def test_dng_holds_camera_rgb_and_the_dng_colour_tags(image, tmp_path):
    path = write_output(image, tmp_path / "out.dng", "dng")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tags = {tag.code: tag.value for tag in page.tags}
        pixels = page.asarray()
    assert tags[262] == 34892  # LinearRaw
    assert tags[277] == 3 and tags[258] == (16, 16, 16)
    assert pixels.dtype == np.uint16
    headroom = 2.0 ** -writers.DNG_HEADROOM_EV  # 0.7 EV below the engine's brightness, given back by the tag
    np.testing.assert_allclose(pixels, np.clip(image.camera_rgb * headroom, 0, 1) * 65535.0, atol=0.51)
    assert bytes(tags[50706]) == bytes([1, 4, 0, 0])
    assert tags[50708] == "Lowlight Synthetic Bayer"
    matrix = np.array(tags[50721], dtype=float).reshape(9, 2)
    np.testing.assert_allclose(matrix[:, 0] / matrix[:, 1], DEFAULT_CAM_XYZ.ravel(), atol=1e-4)
    assert tags[50778] == 21  # D65
    neutral = np.array(tags[50728], dtype=float).reshape(3, 2)
    np.testing.assert_allclose(neutral[:, 0] / neutral[:, 1], NEUTRAL, atol=1e-4)
    assert tags[50714] == (0, 0, 0) and tags[50717] == (65535, 65535, 65535)
    assert tags[50730] == (7, 10)  # BaselineExposure +0.7
    assert bytes(tags[50827]).rstrip(b"\0") == b"source.dng"
    assert tags[305] == SOFTWARE
    assert 33421 not in tags and 33422 not in tags and 50829 not in tags  # no CFA/ActiveArea from the source


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
@pytest.mark.parametrize("fmt", ["dng", "tiff", "jpeg"])
def test_exiftool_validate_finds_no_errors(image, tmp_path, fmt):
    path = write_output(image, tmp_path / f"out{writers.EXTENSIONS[fmt]}", fmt)
    report = subprocess.run(
        ["exiftool", "-validate", "-warning", "-error", "-a", str(path)], capture_output=True, text=True, check=True
    ).stdout
    problems = [line for line in report.splitlines() if not line.startswith("Validate")]
    if fmt == "tiff":
        # exiftool wants GPSProcessingMethod in a TIFF's GPS IFD; the source has none to copy.
        problems = [line for line in problems if "GPSProcessingMethod" not in line]
        assert problems == [], report
    else:
        assert "Validate                        : OK" in report and problems == [], report


@pytest.mark.darktable
@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="darktable-cli not installed")
def test_darktable_renders_the_dng(image, tmp_path):
    path = write_output(image, tmp_path / "out.dng", "dng")
    rendered = tmp_path / "rendered.jpg"
    subprocess.run(
        ["darktable-cli", str(path), str(rendered), "--core", "--configdir", str(tmp_path / "dtconf"),
         "--library", ":memory:"],
        capture_output=True, timeout=120, check=True,
    )
    rgb = iio.imread(rendered).astype(np.float64)
    assert rgb.shape == (HEIGHT, WIDTH, 3)
    assert 60 < rgb.mean() < 220
    assert_colour_order(rgb)


# ---------------------------------------------------------------- TIFF and JPEG


def icc_description(profile: bytes) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))


def test_tiff_is_16_bit_srgb_with_icc(image, tmp_path):
    path = write_output(image, tmp_path / "out.tif", "tiff")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        pixels = page.asarray()
        profile = page.tags[34675].value
        orientation = page.tags[274].value
    assert pixels.dtype == np.uint16 and pixels.shape == (HEIGHT, WIDTH, 3)
    # written strip by strip (HEIGHT > one strip), the same codes as the whole image converted at once
    assert HEIGHT > writers._ROWS_PER_STRIP
    np.testing.assert_array_equal(pixels, writers._display_codes(image.camera_rgb, image.color, 65535, np.uint16, "srgb", True))
    assert "sRGB" in icc_description(profile)
    assert orientation == 1
    expected = float(srgb_encode(np.float32(GREY))) * 65535
    np.testing.assert_allclose(patch(pixels.astype(float), "grey"), expected, atol=3)
    assert_colour_order(pixels.astype(np.float64))


@pytest.mark.parametrize("space", ["srgb", "rec2020"])
def test_linear_tiff_holds_linear_values_and_an_honest_profile(image, tmp_path, space):
    path = write_output(image, tmp_path / "out.tif", "tiff", linear_tiff=True, space=space)
    with tifffile.TiffFile(path) as tif:
        pixels = tif.pages[0].asarray()
        profile = tif.pages[0].tags[34675].value
    np.testing.assert_allclose(patch(pixels.astype(float), "grey"), GREY * 65535, atol=3)
    assert profile == linear_icc_profile(space)
    assert "linear" in icc_description(profile)


@pytest.mark.parametrize("space", ["srgb", "rec2020"])
def test_linear_icc_profile_converts_grey_like_the_srgb_curve(space):
    """A colour manager (littleCMS via Pillow) maps linear grey to the sRGB-encoded grey."""
    linear = ImageCms.ImageCmsProfile(io.BytesIO(linear_icc_profile(space)))
    to_srgb = ImageCms.buildTransform(linear, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    levels = np.array([0.05, 0.2, 0.5, 0.9])
    codes = np.rint(levels * 255).astype(np.uint8)
    grey = Image.fromarray(np.repeat(codes[None, :, None], 3, axis=2), "RGB")
    out = np.asarray(ImageCms.applyTransform(grey, to_srgb), dtype=float)[0]
    expected = srgb_encode((codes / 255.0).astype(np.float32)) * 255
    np.testing.assert_allclose(out, np.repeat(expected[:, None], 3, axis=1), atol=2.5)


def test_linear_srgb_profile_keeps_primaries():
    linear = ImageCms.ImageCmsProfile(io.BytesIO(linear_icc_profile("srgb")))
    to_srgb = ImageCms.buildTransform(linear, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    primaries = Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8), "RGB")
    out = np.asarray(ImageCms.applyTransform(primaries, to_srgb), dtype=float)[0]
    np.testing.assert_allclose(out, np.eye(3) * 255, atol=3)


def test_jpeg_decodes_as_srgb_with_icc(image, tmp_path):
    path = write_output(image, tmp_path / "out.jpg", "jpeg")
    rgb = iio.imread(path).astype(np.float64)
    assert rgb.shape == (HEIGHT, WIDTH, 3)
    expected = float(srgb_encode(np.float32(GREY))) * 255
    np.testing.assert_allclose(patch(rgb, "grey"), expected, atol=3)
    assert_colour_order(rgb)
    with Image.open(path) as jpeg:
        assert "sRGB" in icc_description(jpeg.info["icc_profile"])


def test_orientation_is_a_tag_not_a_rotation(make_dng, tmp_path):
    source = make_dng("rotated.dng", height=HEIGHT, width=WIDTH)
    color = CameraColor(wb=1.0 / NEUTRAL, cam_xyz=DEFAULT_CAM_XYZ.copy())
    rotated = OutputImage(test_scene(HEIGHT, WIDTH), color, 6, "Lowlight", "Synthetic Bayer", source)
    for fmt in writers.FORMATS:
        path = write_output(rotated, tmp_path / f"r{writers.EXTENSIONS[fmt]}", fmt)
        opened = exiv2.ImageFactory.open(str(path))
        opened.readMetadata()
        assert (opened.pixelWidth(), opened.pixelHeight()) == (WIDTH, HEIGHT), fmt
        assert read_exif(path)["Image Orientation"] == "Rotated 90 CW", fmt


def test_dng_says_the_exposure_is_done(make_dng, tmp_path):
    """A camera's exposure compensation is not carried into the DNG: darktable would undo it again."""
    source = make_dng("compensated.dng", height=HEIGHT, width=WIDTH)
    opened = exiv2.ImageFactory.open(str(source))
    opened.readMetadata()
    opened.exifData()["Exif.Photo.ExposureBiasValue"] = "-3/1"
    opened.writeMetadata()
    color = CameraColor(wb=1.0 / NEUTRAL, cam_xyz=DEFAULT_CAM_XYZ.copy())
    shot = OutputImage(test_scene(HEIGHT, WIDTH), color, 1, "Lowlight", "Synthetic Bayer", source, ev=5.0)
    assert read_exif(source)["EXIF ExposureBiasValue"] == "-3"
    assert read_exif(write_output(shot, tmp_path / "out.dng", "dng"))["EXIF ExposureBiasValue"] == "0"
    assert read_exif(write_output(shot, tmp_path / "out.jpg", "jpeg"))["EXIF ExposureBiasValue"] == "-3"


def test_one_table_of_output_formats() -> None:
    """writers.OUTPUT_FORMATS has a writer for every name files.formats offers (the names the options and the
    plugin offer), and no other."""
    from lowlight_raw.files.formats import EXTENSIONS
    from lowlight_raw.options import FORMATS

    assert tuple(writers.OUTPUT_FORMATS) == FORMATS == tuple(EXTENSIONS)
    assert EXTENSIONS == {"dng": ".dng", "tiff": ".tif", "jpeg": ".jpg"}


@pytest.mark.parametrize("fmt", ["dng", "tiff", "jpeg"])
def test_an_output_is_on_disk_before_it_gets_its_name(image, tmp_path, monkeypatch, fmt):
    """write_output fsyncs the finished temporary file, then renames it: a crash leaves no half file."""
    target = tmp_path / f"out{writers.EXTENSIONS[fmt]}"
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append((os.readlink(f"/proc/self/fd/{descriptor}"), target.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(writers.os, "fsync", fsync)
    write_output(image, target, fmt)
    assert synced and all(Path(name).name.startswith(".out") and not named for name, named in synced)
    assert target.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial left
