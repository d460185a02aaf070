"""X-Trans and linear (LinearRaw) DNGs end to end with their shipped networks: every format opens
in LibRaw, keeps the EXIF and the colours, passes ``exiftool -validate`` and renders in darktable."""

import shutil
import subprocess

import exifread
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from helpers import decode_output, file_sha256, finished_outputs, patch_means
from lowlight_raw.cli import main
from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.testing.synthetic import DngSpec, dark_linear_exposure, test_scene, write_linear_dng

SIZES = {"xtrans": (91, 125), "linear": (90, 122)}  # the fixtures' visible sizes (conftest)
EXTENSION = {"dng": "dng", "tiff": "tif", "jpeg": "jpg"}


@pytest.fixture(scope="module")
def enhancer():
    return Enhancer("fast", device="cpu")


@pytest.mark.parametrize("kind", ["xtrans", "linear"])
@pytest.mark.parametrize("fmt", ["dng", "tiff", "jpeg"])
def test_outputs_open_keep_exif_and_colours(request, enhancer, kind, fmt, tmp_path):
    source = request.getfixturevalue(f"{kind}_dng")
    before = file_sha256(source)
    result = enhancer.enhance(source, EnhanceOptions(output_format=fmt, output_dir=tmp_path / "out"))
    assert result.output.name == f"{source.stem}_lowlight.{EXTENSION[fmt]}"
    assert file_sha256(source) == before
    rgb = decode_output(result.output, fmt)  # a DNG through LibRaw
    assert rgb.shape == (*SIZES[kind], 3)
    red, green, blue, grey = patch_means(rgb)
    assert red[0] > 2 * max(red[1], red[2]), red
    assert green[1] > 1.5 * max(green[0], green[2]), green
    assert blue[2] > 1.5 * max(blue[0], blue[1]), blue
    # A grey patch stays grey within 25 %: the linear fixture (90 × 122 px, the network alone) spans up
    # to 22 % over noise seeds 0-9 with the chroma smoothing's block grid laid exactly (up to 19.9 % with
    # the grid drifting by up to 1.5 px, as before); on the noise sweep's scenes the two score alike.
    assert np.ptp(grey) < 0.25 * grey.mean(), grey
    assert 0.1 < float(rgb.mean()) < 0.9
    with open(result.output, "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert str(tags["EXIF ISOSpeedRatings"]) == "6400"
    assert str(tags["EXIF LensModel"]) == "FE 35mm F2.8 ZA"
    assert "GPS GPSLatitude" in tags
    if shutil.which("exiftool"):
        report = subprocess.run(["exiftool", "-validate", "-warning", "-error", "-a", str(result.output)],
                                capture_output=True, text=True, check=True).stdout
        problems = [line for line in report.splitlines() if not line.startswith("Validate")]
        if fmt == "tiff":  # exiftool wants GPSProcessingMethod in a TIFF's GPS IFD; the source has none
            problems = [line for line in problems if "GPSProcessingMethod" not in line]
        assert problems == [], report


@pytest.mark.darktable
@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="darktable-cli not installed")
@pytest.mark.parametrize("kind", ["xtrans", "linear"])
def test_darktable_renders_the_dng_output(request, enhancer, kind, tmp_path):
    result = enhancer.enhance(request.getfixturevalue(f"{kind}_dng"), EnhanceOptions(output_dir=tmp_path / "out"))
    rendered = tmp_path / "rendered.jpg"
    subprocess.run(["darktable-cli", str(result.output), str(rendered), "--core", "--configdir", str(tmp_path / "dt"),
                    "--library", ":memory:"], capture_output=True, timeout=120, check=True)
    rgb = iio.imread(rendered).astype(np.float64) / 255
    assert rgb.shape == (*SIZES[kind], 3)
    red, green, blue, _ = patch_means(rgb)
    assert red[0] > max(red[1], red[2]) and green[1] > max(green[0], green[2]) and blue[2] > max(blue[0], blue[1])


def test_command_line_takes_a_mixed_batch(make_dng, xtrans_dng, linear_dng, tmp_path, capsys):
    """One command, three sensor layouts: each file gets its own network."""
    bayer = make_dng("bayer_dark.dng")
    code = main(["enhance", str(bayer), str(xtrans_dng), str(linear_dng), "-o", str(tmp_path / "out"), "--format", "tiff"])
    assert code == 0, capsys.readouterr()
    assert finished_outputs(tmp_path / "out") == ["bayer_dark_lowlight.tif", "linear_dark_lowlight.tif", "xt_dark_lowlight.tif"]
    assert tifffile.imread(tmp_path / "out" / "xt_dark_lowlight.tif").shape == (*SIZES["xtrans"], 3)


def test_licence_clean_model_refuses_other_sensors_by_name(make_dng, xtrans_dng, tmp_path, capsys):
    """The licence-clean model has only a Bayer network: in a mixed batch the Bayer file is
    enhanced, and the X-Trans file fails in one line naming it, with nothing written for it."""
    bayer = make_dng("bayer_dark.dng")
    code = main(["enhance", str(bayer), str(xtrans_dng), "--model", "fast-licence-clean",
                 "-o", str(tmp_path / "out"), "--format", "tiff"])
    assert code != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {xtrans_dng}: the 'fast-licence-clean' model has no network for xtrans sensors "
                      "in this installation"]
    assert finished_outputs(tmp_path / "out") == ["bayer_dark_lowlight.tif"]


def test_a_linear_source_carries_its_opcode_lists_into_a_dng(tmp_path, enhancer):
    """A LinearRaw source's OpcodeList2 (e.g. a gain map) and OpcodeList3 act on linear RGB, like our
    DNG output: both are carried; TIFF and JPEG get neither (nothing would apply them)."""
    opcodes2, opcodes3 = b"\x00\x00\x00\x00", _one_opcode()
    spec = DngSpec(raw_tags=((51009, 7, len(opcodes2), opcodes2, True), (51022, 7, len(opcodes3), opcodes3, True)))
    source = write_linear_dng(tmp_path / "op.dng", dark_linear_exposure(test_scene(64, 96), spec, 10.0, 2e-4, 2e-7,
                                                                          np.random.default_rng(0)), spec)
    out = enhancer.enhance(source, EnhanceOptions(output_dir=tmp_path / "out")).output
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages[0].tags
        assert bytes(tags[51009].value) == opcodes2 and bytes(tags[51022].value) == opcodes3
    tiff = enhancer.enhance(source, EnhanceOptions(output_format="tiff", output_dir=tmp_path / "out")).output
    with tifffile.TiffFile(tiff) as tif:
        assert 51009 not in tif.pages[0].tags and 51022 not in tif.pages[0].tags


def _one_opcode() -> bytes:
    """An OpcodeList3 with one WarpRectilinear opcode, big-endian (as tests/test_metadata.py)."""
    import struct

    params = struct.pack(">I8d", 1, 1.0, -0.02, 0.004, 0.0, 0.0, 0.0, 0.5, 0.5)
    return struct.pack(">I", 1) + struct.pack(">I4BII", 1, 1, 3, 0, 0, 0, len(params)) + params


def _jpeg_xl_dng(path):
    """A LinearRaw DNG whose compression tag says JPEG XL (DNG 1.7), which this LibRaw cannot decode."""
    spec = DngSpec()
    write_linear_dng(path, dark_linear_exposure(test_scene(32, 48), spec, 1.0, 0.0, 0.0, np.random.default_rng(0)), spec)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].tags[259].valueoffset  # Compression, stored in its IFD entry
    data[offset : offset + 2] = (52546).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def _preview_only_dng(path):
    """A DNG (DNGVersion set) holding only an 8-bit RGB preview, as some phone apps write."""
    from lowlight_raw.files.dngtags import camera_tags

    spec = DngSpec()
    tags = [t for t in camera_tags(spec.make, spec.camera_model, spec.cam_xyz, np.asarray(spec.as_shot_neutral), 1) if t[0] != 254]
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((30, 40, 3), np.uint8), photometric="rgb", subfiletype=1, extratags=tags, metadata=None)
    return path


@pytest.mark.parametrize(("make", "reason"), [
    (_jpeg_xl_dng, "JPEG XL-compressed DNG, which this LibRaw cannot decode"),
    (_preview_only_dng, "DNG without raw data (only a preview image): nothing to enhance"),
])
def test_undecodable_dngs_get_one_clear_line(tmp_path, capsys, make, reason):
    source = make(tmp_path / "phone.dng")
    before = file_sha256(source)
    assert main(["enhance", str(source), "-o", str(tmp_path / "out")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {source}: {reason}"), errors
    assert finished_outputs(tmp_path / "out") == [] and file_sha256(source) == before
