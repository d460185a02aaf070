"""Metadata: the source's EXIF/GPS/lens/maker notes/XMP/IPTC survive into every output format."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from pathlib import Path

import exiv2
import numpy as np
import pytest
import tifffile

from conftest import FIXTURE_EXIF
from lowlight_raw.errors import LowlightError
from lowlight_raw.files.metadata import SOFTWARE, camera_iso, copy_metadata, read_exif
from lowlight_raw.files.writers import EXTENSIONS, FORMATS, OutputImage, write_output
from lowlight_raw.pipeline.color import CameraColor
from lowlight_raw.testing.synthetic import DEFAULT_CAM_XYZ, DngSpec, test_scene, write_cfa_dng

HEIGHT, WIDTH = 40, 56
MAKER_NOTE_BLOB = bytes(range(256)) + b"opaque maker note \x00\xff"


def exiv2_metadata(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """EXIF, XMP (key → text) and IPTC (key → all values) as exiv2 reads them back."""
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    exif = {d.key(): d.toString() for d in image.exifData()}
    xmp = {d.key(): d.toString() for d in image.xmpData()}
    iptc: dict[str, list[str]] = {}
    for datum in image.iptcData():
        iptc.setdefault(datum.key(), []).append(datum.toString())
    return exif, xmp, iptc


def write_output_from(source: Path, fmt: str, folder: Path, ev: float = 5.0) -> Path:
    color = CameraColor(wb=np.array([2.0, 1.0, 1.6]), cam_xyz=DEFAULT_CAM_XYZ.copy())
    image = OutputImage(test_scene(HEIGHT, WIDTH), color, 1, "Lowlight", "Synthetic Bayer", source, ev=ev)
    return write_output(image, folder / f"{source.stem}_out{EXTENSIONS[fmt]}", fmt)


def add_metadata(path: Path, xmp: dict[str, str], iptc: dict[str, list[str]]) -> None:
    """Add XMP (and one earlier History event) and IPTC to an existing fixture file with exiv2."""
    exiv2.XmpProperties.registerNs("http://darktable.sf.net/", "darktable")
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    xmp_data, iptc_data = image.xmpData(), image.iptcData()
    for key, value in xmp.items():
        xmp_data[key] = value
    history, event = exiv2.XmpTextValue(), exiv2.XmpTextValue()
    history.setXmpArrayType(exiv2.XmpValue.XmpArrayType.xaSeq)
    event.setXmpStruct()
    xmp_data["Xmp.xmpMM.History"] = history
    xmp_data["Xmp.xmpMM.History[1]"] = event
    xmp_data["Xmp.xmpMM.History[1]/stEvt:action"] = "saved"
    for key, values in iptc.items():
        for value in values:
            datum = exiv2.Iptcdatum(exiv2.IptcKey(key))
            datum.setValue(value)
            iptc_data.add(datum)
    image.writeMetadata()


@pytest.fixture
def source(make_dng) -> Path:
    return make_dng("DSC01234.dng", height=HEIGHT, width=WIDTH)


def test_read_exif_and_camera_iso(source):
    tags = read_exif(source)
    assert tags["Image Make"] == "Lowlight"
    assert tags["EXIF ISOSpeedRatings"] == "6400"
    assert tags["EXIF LensModel"] == "FE 35mm F2.8 ZA"
    assert camera_iso(source) == 6400.0


def test_read_exif_of_a_non_image_is_empty_and_of_a_missing_file_an_error(tmp_path):
    text = tmp_path / "notes.dng"
    text.write_text("not a raw file")
    assert read_exif(text) == {}
    assert camera_iso(text) is None
    with pytest.raises(LowlightError, match="missing.dng"):
        read_exif(tmp_path / "missing.dng")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_fixture_tag_reads_back_equal_with_exiv2_and_exifread(source, tmp_path, fmt):
    out = write_output_from(source, fmt, tmp_path)
    source_exif, _, _ = exiv2_metadata(source)
    out_exif, _, _ = exiv2_metadata(out)
    for key in [*FIXTURE_EXIF, "Exif.Image.Make", "Exif.Image.Model"]:
        assert out_exif.get(key) == source_exif[key], key
    source_tags, out_tags = read_exif(source), read_exif(out)
    copied = [k for k in source_tags if k.startswith(("EXIF ", "GPS ")) or k in ("Image Make", "Image Model", "Image Artist")]
    assert len(copied) >= len(FIXTURE_EXIF)
    for key in copied:
        assert out_tags.get(key) == source_tags[key], key


@pytest.mark.parametrize("fmt", FORMATS)
def test_software_and_processing_note_are_recorded(source, tmp_path, fmt):
    out = write_output_from(source, fmt, tmp_path, ev=5.25)
    exif, xmp, _ = exiv2_metadata(out)
    assert exif["Exif.Image.Software"] == SOFTWARE
    assert xmp["Xmp.xmp.CreatorTool"] == SOFTWARE
    assert xmp["Xmp.xmpMM.History[1]/stEvt:action"] == "converted"
    assert xmp["Xmp.xmpMM.History[1]/stEvt:softwareAgent"] == SOFTWARE
    note = xmp["Xmp.xmpMM.History[1]/stEvt:parameters"]
    assert "DSC01234.dng" in note and "+5.25 EV" in note
    assert "Exif.Image.ImageDescription" not in exif and "Exif.Photo.UserComment" not in exif


@pytest.mark.parametrize("fmt", FORMATS)
def test_source_image_structure_is_not_copied(source, tmp_path, fmt):
    out = write_output_from(source, fmt, tmp_path)
    exif, _, _ = exiv2_metadata(out)
    for key in ("Exif.Image.CFAPattern", "Exif.Image.CFARepeatPatternDim", "Exif.Image.ActiveArea",
                "Exif.Image.CFAPlaneColor", "Exif.Image.CFALayout", "Exif.Image.BlackLevelRepeatDim"):
        assert key not in exif, key
    if fmt == "dng":
        with tifffile.TiffFile(out) as tif:
            tags = {tag.code: tag.value for tag in tif.pages[0].tags}
        assert tags[262] == 34892 and tags[50714] == (0, 0, 0) and tags[50717] == (65535,) * 3
        assert (tags[256], tags[257]) == (WIDTH, HEIGHT)
    else:
        for key in ("Exif.Image.BlackLevel", "Exif.Image.WhiteLevel", "Exif.Image.ColorMatrix1",
                    "Exif.Image.AsShotNeutral", "Exif.Image.DNGVersion", "Exif.Image.UniqueCameraModel"):
            assert key not in exif, key


@pytest.mark.parametrize("fmt", FORMATS)
def test_opaque_maker_note_survives_byte_equal(make_dng, tmp_path, fmt):
    blob = " ".join(str(b) for b in MAKER_NOTE_BLOB)
    source = make_dng("mn.dng", height=HEIGHT, width=WIDTH, exif={**FIXTURE_EXIF, "Exif.Photo.MakerNote": blob})
    out = write_output_from(source, fmt, tmp_path)
    image = exiv2.ImageFactory.open(str(out))
    image.readMetadata()
    value = image.exifData()["Exif.Photo.MakerNote"].value()
    assert bytes(value.data()) == MAKER_NOTE_BLOB


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoded_maker_note_is_re_encoded(tmp_path, fmt):
    """A Canon maker note (an IFD exiv2 understands) keeps its tags in every format."""
    spec = DngSpec(make="Canon", camera_model="EOS R6", exif={
        **FIXTURE_EXIF, "Exif.Canon.OwnerName": "Night Owl", "Exif.Canon.FirmwareVersion": "Firmware 1.0.2"})
    source = write_cfa_dng(tmp_path / "canon.dng", np.full((HEIGHT, WIDTH), 1000, np.uint16), spec)
    out = write_output_from(source, fmt, tmp_path)
    exif, _, _ = exiv2_metadata(out)
    assert exif["Exif.Canon.OwnerName"] == "Night Owl"
    assert exif["Exif.Canon.FirmwareVersion"] == "Firmware 1.0.2"


@pytest.mark.parametrize("fmt", FORMATS)
def test_xmp_and_iptc_are_copied_but_not_the_source_development(source, tmp_path, fmt):
    add_metadata(
        source,
        xmp={
            "Xmp.dc.subject": "night",
            "Xmp.xmp.Rating": "4",
            "Xmp.crs.Exposure2012": "+1.50",
            "Xmp.darktable.auto_presets_applied": "1",
        },
        iptc={"Iptc.Application2.Keywords": ["night", "city"], "Iptc.Application2.City": ["Paris"]},
    )
    _, source_xmp, _ = exiv2_metadata(source)
    assert "Xmp.crs.Exposure2012" in source_xmp and "Xmp.darktable.auto_presets_applied" in source_xmp
    out = write_output_from(source, fmt, tmp_path)
    _, xmp, iptc = exiv2_metadata(out)
    assert xmp["Xmp.dc.subject"] == "night" and xmp["Xmp.xmp.Rating"] == "4"
    assert not any(key.startswith(("Xmp.crs.", "Xmp.darktable.")) for key in xmp)
    assert xmp["Xmp.xmpMM.History[1]/stEvt:action"] == "saved"  # earlier history kept, ours appended
    assert xmp["Xmp.xmpMM.History[2]/stEvt:action"] == "converted"
    assert iptc["Iptc.Application2.Keywords"] == ["night", "city"]
    assert iptc["Iptc.Application2.City"] == ["Paris"]


def test_unreadable_source_metadata_warns_and_still_records_the_software(tmp_path, caplog):
    bogus = tmp_path / "bogus.raw"
    bogus.write_bytes(b"\x00" * 64)
    target = tmp_path / "out.tif"
    tifffile.imwrite(target, np.zeros((8, 8, 3), np.uint16), photometric="rgb", metadata=None)
    with caplog.at_level(logging.WARNING, logger="lowlight_raw.files.metadata"):
        copy_metadata(bogus, target, "note")
    assert "bogus.raw" in caplog.text
    exif, xmp, _ = exiv2_metadata(target)
    assert exif["Exif.Image.Software"] == SOFTWARE
    assert xmp["Xmp.xmpMM.History[1]/stEvt:parameters"] == "note"


def test_unwritable_target_is_a_one_line_error(source, tmp_path):
    target = tmp_path / "broken.tif"
    target.write_bytes(b"II*\x00 truncated")
    with pytest.raises(LowlightError) as err:
        copy_metadata(source, target, "note")
    assert str(err.value).startswith(f"{target}: cannot write metadata")
    assert "\n" not in str(err.value)


def _warp_rectilinear_opcode_list() -> bytes:
    """A DNG ``OpcodeList3`` with one WarpRectilinear opcode (a little barrel distortion), big-endian."""
    params = struct.pack(">I8d", 1, 1.0, -0.02, 0.004, 0.0, 0.0, 0.0, 0.5, 0.5)
    return struct.pack(">I", 1) + struct.pack(">I4BII", 1, 1, 3, 0, 0, 0, len(params)) + params


SONY_SPLINES = {  # count-prefixed int16 splines as a Sony ARW stores them
    0x7032: (16, *range(0, 160, 10)),  # VignettingCorrParams
    0x7035: (32, *range(-16, 16)),  # ChromaticAberrationCorrParams
    0x7037: (16, *range(-80, 80, 10)),  # DistortionCorrParams
}


@pytest.mark.parametrize("raw_in_subifd", [False, True], ids=["raw in IFD0", "raw in a SubIFD"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_embedded_lens_corrections_are_carried(tmp_path, fmt, raw_in_subifd):
    """Sony's correction splines reach IFD0 of every output; a DNG's OpcodeList3 reaches a DNG output."""
    opcodes = _warp_rectilinear_opcode_list()
    raw_tags = tuple((tag, "h", len(values), values, True) for tag, values in SONY_SPLINES.items())
    spec = DngSpec(raw_in_subifd=raw_in_subifd, raw_tags=(*raw_tags, (51022, 7, len(opcodes), opcodes, True)))
    source = write_cfa_dng(tmp_path / "ARW_like.dng", np.full((HEIGHT, WIDTH), 600, np.uint16), spec)
    out = write_output_from(source, fmt, tmp_path)
    exif, _, _ = exiv2_metadata(out)
    for tag, values in SONY_SPLINES.items():
        key = exiv2.ExifKey(tag, "Image").key()
        assert exif[key] == " ".join(map(str, values)), key
    if fmt == "dng":
        with tifffile.TiffFile(out) as tif:
            assert bytes(tif.pages[0].tags[51022].value) == opcodes
        report = subprocess.run(["exiftool", "-a", "-OpcodeList3", str(out)], capture_output=True, text=True).stdout
        assert "WarpRectilinear" in report or shutil.which("exiftool") is None
    else:
        assert "Exif.Image.OpcodeList3" not in exif  # our rendered TIFF/JPEG has no stage 3 to apply it
