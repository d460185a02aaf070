"""Decoding real DNG files with LibRaw: every Bayer phase, odd crops, black levels, bad files."""

import os

import numpy as np
import pytest

from lowlight_raw.errors import LowlightError
from lowlight_raw.files import raw as raw_module
from lowlight_raw.files.metadata import camera_iso
from lowlight_raw.files.raw import read_raw
from lowlight_raw.layouts.bayer import PATTERNS
from lowlight_raw.testing.synthetic import DEFAULT_CAM_XYZ, DngSpec, dark_exposure, test_scene, write_cfa_dng

NEUTRAL = np.array(DngSpec().as_shot_neutral)


def _write(tmp_path, pattern, margins, name="x.dng", black=(500, 510, 520, 530)):
    spec = DngSpec(pattern=pattern, margins=margins, black=black, exif={"Exif.Photo.ISOSpeedRatings": "3200"})
    active = dark_exposure(test_scene(64, 96), spec, 1.0, 0.0, 0.0, np.random.default_rng(0))
    return write_cfa_dng(tmp_path / name, active, spec)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("margins", [(0, 0, 0, 0), (3, 5, 2, 1), (2, 1, 0, 3)])
def test_every_phase_and_crop_puts_colours_in_the_right_planes(tmp_path, pattern, margins):
    photo = read_raw(_write(tmp_path, pattern, margins))
    packed = photo.layout.pack(photo.visible)  # R, G1, G2, B whatever the file's phase
    h, w = packed.shape[1:]
    patch = lambda i: (slice(h // 8, h // 3), slice(i * w // 4 + w // 16, (i + 1) * w // 4 - w // 16))
    red, green, blue = (packed[(slice(None), *patch(i))].mean(axis=(1, 2)) for i in range(3))
    np.testing.assert_allclose(red, [0.6 * NEUTRAL[0], 0.05, 0.05, 0.05 * NEUTRAL[2]], atol=2e-3)
    np.testing.assert_allclose(green, [0.05 * NEUTRAL[0], 0.6, 0.6, 0.05 * NEUTRAL[2]], atol=2e-3)
    np.testing.assert_allclose(blue, [0.05 * NEUTRAL[0], 0.05, 0.05, 0.6 * NEUTRAL[2]], atol=2e-3)


def test_metadata_and_colour(tmp_path):
    photo = read_raw(_write(tmp_path, "RGGB", (0, 0, 0, 0)))
    assert (photo.make, photo.camera_model, photo.iso) == ("Lowlight", "Synthetic Bayer", 3200.0)
    assert photo.layout.height == 64 and photo.layout.width == 96 and photo.visible.dtype == np.float32
    np.testing.assert_allclose(photo.color.wb, 1 / NEUTRAL, rtol=1e-4)
    np.testing.assert_allclose(photo.color.cam_xyz, DEFAULT_CAM_XYZ, atol=1e-4)


def test_a_dng_with_its_raw_in_a_subifd_reads_like_one_with_it_in_ifd0(tmp_path):
    """Adobe DNG Converter's layout (IFD0 a preview, the CFA in a SubIFD) decodes the same."""
    decoded = []
    for raw_in_subifd in (False, True):
        spec = DngSpec(pattern="GBRG", margins=(3, 5, 2, 1), raw_in_subifd=raw_in_subifd,
                       exif={"Exif.Photo.ISOSpeedRatings": "3200"})
        active = dark_exposure(test_scene(64, 96), spec, 1.0, 0.0, 0.0, np.random.default_rng(0))
        decoded.append(read_raw(write_cfa_dng(tmp_path / f"{raw_in_subifd}.dng", active, spec)))
    ifd0, subifd = decoded
    assert subifd.layout == ifd0.layout and subifd.iso == 3200.0
    np.testing.assert_array_equal(subifd.visible, ifd0.visible)
    np.testing.assert_allclose(subifd.color.cam_xyz, ifd0.color.cam_xyz)
    np.testing.assert_allclose(subifd.color.wb, ifd0.color.wb)


def test_masked_pixels_are_exposed(tmp_path):
    spec = DngSpec(margins=(0, 40, 0, 0))
    active = dark_exposure(test_scene(64, 96), spec, 1.0, 0.0, 0.0, np.random.default_rng(0))
    noise = np.random.default_rng(1).normal(0, 4.0, (64, 136))
    photo = read_raw(write_cfa_dng(tmp_path / "m.dng", active, spec, masked_value=noise))
    assert photo.masked is not None and photo.masked.size >= 1024
    assert abs(float(photo.masked.mean())) < 1e-3
    assert float(photo.masked.std()) == pytest.approx(4.0 / (16383 - 512), rel=0.1)


def test_not_a_raw(tmp_path):
    fake = tmp_path / "notes.dng"
    fake.write_text("hello")
    with pytest.raises(LowlightError, match=r"notes\.dng: not a RAW file"):
        read_raw(fake)


def test_truncated_raw(tmp_path, capfd):
    good = _write(tmp_path, "RGGB", (0, 0, 0, 0))
    cut = tmp_path / "cut.dng"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(LowlightError, match=r"cut\.dng: (not a RAW file, or a truncated one|corrupt RAW file)") as error:
        read_raw(cut)
    # LibRaw's own report is folded into the one line, not printed beside it
    assert "Unexpected end of file" in str(error.value)
    assert capfd.readouterr().err == ""


def test_what_else_is_printed_while_libraw_reads_is_kept(tmp_path, capfd):
    good = _write(tmp_path, "RGGB", (0, 0, 0, 0))
    with raw_module._libraw_stderr():
        os.write(2, b"another thread's line\n")
        read_raw(good)
    assert capfd.readouterr().err == "another thread's line\n"
    with pytest.raises(ValueError), raw_module._libraw_stderr() as printed:
        os.write(2, b"kept\nx.dng: Unexpected end of file\n")
        assert printed.take_libraw_lines() == ["x.dng: Unexpected end of file"]
        raise ValueError
    assert capfd.readouterr().err == "kept\n"  # the line taken is reported by the taker, once


def test_missing_and_directory(tmp_path):
    with pytest.raises(LowlightError, match="file not found"):
        read_raw(tmp_path / "absent.nef")
    with pytest.raises(LowlightError, match="is a directory"):
        read_raw(tmp_path)


ISO_FIXTURES = {  # where the ISO is recorded → what the writer puts there
    "EXIF ISOSpeedRatings": dict(exif={"Exif.Photo.ISOSpeedRatings": "6400"}),
    "EXIF RecommendedExposureIndex": dict(exif={"Exif.Photo.RecommendedExposureIndex": "1600"}),
    "IFD0 ISOSpeedRatings (pidng)": dict(raw_tags=((0x8827, "H", 1, 800, True),)),
    "Nikon maker note (LibRaw and exiv2)": dict(make="NIKON CORPORATION", camera_model="NIKON D750",
                                                exif={"Exif.Nikon3.ISOSpeed": "0 3200"}),
}


@pytest.mark.parametrize(("where", "expected"), [(w, e) for w, e in zip(ISO_FIXTURES, (6400.0, 1600.0, 800.0, 3200.0))])
def test_iso_is_found_wherever_it_is_recorded(tmp_path, where, expected):
    spec = DngSpec(**ISO_FIXTURES[where])
    active = dark_exposure(test_scene(32, 48), spec, 1.0, 0.0, 0.0, np.random.default_rng(0))
    path = write_cfa_dng(tmp_path / "iso.dng", active, spec)
    assert read_raw(path).iso == expected
    assert camera_iso(path, libraw_iso=0.0) == expected  # without LibRaw's help too (maker notes: exiv2)


def test_iso_known_only_to_libraw_is_used_and_none_is_none(tmp_path):
    spec = DngSpec()
    path = write_cfa_dng(tmp_path / "noiso.dng", dark_exposure(test_scene(32, 48), spec, 1.0, 0.0, 0.0,
                                                                np.random.default_rng(0)), spec)
    assert read_raw(path).iso is None
    assert camera_iso(path, exif={}, libraw_iso=1250.0) == 1250.0  # e.g. a Nikon D1 NEF or a Kodak KDC
