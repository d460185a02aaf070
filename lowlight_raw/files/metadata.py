"""Photo metadata: read a RAW's EXIF (exifread), carry it into every output (python-exiv2).

:func:`copy_metadata` copies the source's EXIF (camera, lens, exposure, ISO, dates, GPS, maker
notes), XMP and IPTC into an output file (:func:`with_metadata`: into a small TIFF's bytes),
**except** what describes the source's image data (sizes, compression, CFA layout, black/white
levels, DNG colour tags, thumbnails, preview IFDs):
those belong to the file the writer made and copying them would corrupt it. It then records what
was done, in standard places:

- ``Exif.Image.Software`` and ``Xmp.xmp.CreatorTool``: ``lowlight-raw <version>``;
- one ``Xmp.xmpMM.History`` event (``stEvt:action`` = ``converted``, ``stEvt:parameters`` = the
  processing note, ``stEvt:softwareAgent``, ``stEvt:when``), appended after any earlier history.

``ImageDescription`` and ``UserComment`` are left alone: they belong to the photographer.
Only well-formed entries are copied (:func:`is_well_formed`): a damaged source's entry with an
invalid type, no values, or a type or count its tag cannot have is left out, not carried along.

Embedded lens corrections travel too, into the output's IFD0 where darktable's lens module
("embedded metadata") finds them: Sony's distortion, chromatic-aberration and vignetting splines
(tags 0x7037/0x7035/0x7032, in an ARW's SubIFD), and, into a DNG output only, a DNG source's
``OpcodeList3`` (distortion/vignetting opcodes applied after demosaicing, so they fit our
LinearRaw DNG as they fit the CFA original), and a LinearRaw source's ``OpcodeList2`` too (its
opcodes, e.g. a gain map, act on linear RGB like ours). Darktable 5.6 lost these (its issue #21437).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import exifread
import exiv2

from .. import __version__
from ..errors import LowlightError

SOFTWARE = f"lowlight-raw {__version__}"

log = logging.getLogger(__name__)
# Damaged metadata is skipped (or one error line): the libraries' per-tag complaints are not for the user.
exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.mute)
logging.getLogger("exifread").setLevel(logging.CRITICAL)

# IFD0 tags that describe the stored image rather than the photo (TIFF 6, TIFF/EP, EXIF, Sony
# raw tags), plus the ones the writers set themselves (Orientation, Software).
_IMAGE_STRUCTURE_TAGS = frozenset(
    [
        0x00FE, 0x00FF, 0x0100, 0x0101, 0x0102, 0x0103, 0x0106, 0x0107, 0x0108, 0x0109, 0x010A,
        0x0111, 0x0112, 0x0115, 0x0116, 0x0117, 0x0118, 0x0119, 0x011C, 0x0124, 0x0125, 0x012D,
        0x0131, 0x013D, 0x013E, 0x013F, 0x0140, 0x0142, 0x0143, 0x0144, 0x0145, 0x014A, 0x0152,
        0x0153, 0x0154, 0x0155, 0x015B, 0x0200, 0x0201, 0x0202, 0x0203, 0x0205, 0x0206, 0x0207,
        0x0208, 0x0209, 0x0211, 0x0212, 0x0213, 0x0214, 0x02BC, 0x828D, 0x828E, 0x83BB, 0x8649,
        0x8769, 0x8773, 0x8825, 0xA500,
    ]
)
_SONY_RAW_TAGS = range(0x7000, 0x8000)  # SonyRawFileType, SonyToneCurve, SonyCropSize, …
# DNG tags (50706…) are all about the raw data and its rendering, except these three.
_DNG_TAGS = range(50706, 52000)
_DNG_DESCRIPTIVE_TAGS = frozenset([50709, 50735, 50736])  # LocalizedCameraModel, CameraSerialNumber, LensInfo
# EXIF-IFD tags that describe the stored image, not the photo.
_PHOTO_STRUCTURE_TAGS = frozenset(
    [
        0x9101,  # ComponentsConfiguration
        0x9102,  # CompressedBitsPerPixel
        0xA001,  # ColorSpace
        0xA002,  # PixelXDimension
        0xA003,  # PixelYDimension
        0xA005,  # InteroperabilityTag
        0xA420,  # ImageUniqueID: the output is a different image
        0xA500,  # Gamma
    ]
)
# XMP that would re-apply the source's development (Adobe Camera Raw, darktable history) or that
# describes the source file's pixels or identity.
_XMP_SKIPPED_PREFIXES = ("Xmp.crs.", "Xmp.crss.", "Xmp.darktable.", "Xmp.tiff.", "Xmp.photoshop.ICCProfile")
_XMP_SKIPPED_KEYS = frozenset(
    [
        "Xmp.exif.PixelXDimension",
        "Xmp.exif.PixelYDimension",
        "Xmp.exif.ColorSpace",
        "Xmp.xmpMM.DocumentID",
        "Xmp.xmpMM.InstanceID",
        "Xmp.xmp.CreatorTool",
    ]
)
# Embedded lens corrections, read from the source's raw IFD (else any IFD) and written to IFD0.
_SONY_LENS_CORRECTION_TAGS = (0x7032, 0x7035, 0x7037)  # Vignetting/ChromaticAberration/DistortionCorrParams
_OPCODE_LIST_2 = 51009  # DNG: applied to the linear raw data; fits our output only when the source was linear RGB too
_OPCODE_LIST_3 = 51022  # DNG: applied to the demosaiced image, so valid for a LinearRaw output too
# Tags EXIF requires in every file: set when the source has none.
_EXIF_DEFAULTS = {"Exif.Photo.ExifVersion": "48 50 51 50", "Exif.Photo.FlashpixVersion": "48 49 48 48"}


def read_exif(path: Path) -> dict[str, str]:
    """The EXIF of ``path`` as exifread names it (``"Image Make"``, ``"EXIF ISOSpeedRatings"``…).

    Values are exifread's printable strings. Maker notes are not decoded and thumbnails are
    skipped. A format exifread does not understand gives ``{}`` (metadata is optional for the
    engine); an unreadable file raises :class:`LowlightError`.
    """
    try:
        with open(path, "rb") as handle:
            tags = exifread.process_file(handle, details=False, extract_thumbnail=False)
    except OSError as exc:
        raise LowlightError(path, f"cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:  # exifread raises assorted errors on damaged metadata
        log.warning("%s: EXIF unreadable by exifread (%s)", path, exc)
        return {}
    return {key: str(value) for key, value in tags.items() if not key.startswith("Thumbnail")}


# Where a photo's ISO is recorded, in the order they are trusted: the standard EXIF tags
# (exifread's names; "Image …" is IFD0, where pidng and several converters put it), then what
# LibRaw parsed (it reads many makers' notes), then makers' notes as exiv2 decodes them.
EXIF_ISO_KEYS = ("EXIF ISOSpeedRatings", "EXIF PhotographicSensitivity", "Image ISOSpeedRatings",
                 "EXIF RecommendedExposureIndex", "EXIF ISOSpeed")
MAKER_NOTE_ISO_KEYS = ("Exif.Nikon3.ISOSpeed", "Exif.Nikon3.ISOSettings", "Exif.NikonIi.ISO", "Exif.Nikon1.ISOSpeed",
                       "Exif.Nikon2.ISOSpeed", "Exif.CanonSi.ISOSpeed", "Exif.CanonCs.ISOSpeed", "Exif.Pentax.ISO",
                       "Exif.PentaxDng.ISO", "Exif.Olympus.ISOSpeed", "Exif.Sony1Cs.ISOSetting",
                       "Exif.Sony2Cs.ISOSetting", "Exif.Casio2.ISO", "Exif.Samsung2.ISO", "Exif.Panasonic.ISO")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def camera_iso(path: Path, exif: Mapping[str, str] | None = None, libraw_iso: float = 0.0) -> float | None:
    """The ISO sensitivity ``path`` was shot at, from wherever it is recorded; ``None`` if nowhere.

    ``exif``: :func:`read_exif` of ``path`` when already read; ``libraw_iso``: rawpy's
    ``raw.other.iso_speed`` (0 when LibRaw found none). Sources: :data:`EXIF_ISO_KEYS`, then
    LibRaw, then :data:`MAKER_NOTE_ISO_KEYS`.
    """
    tags = read_exif(path) if exif is None else exif
    for key in EXIF_ISO_KEYS:
        iso = _positive_number(tags.get(key, "").strip("[] ").split(",")[0])
        if iso is not None:
            return iso
    if libraw_iso and libraw_iso > 0:
        return float(libraw_iso)
    return _maker_note_iso(path)


def _maker_note_iso(path: Path) -> float | None:
    try:
        image = exiv2.ImageFactory.open(str(path))
        image.readMetadata()
        exif = image.exifData()
        for key in MAKER_NOTE_ISO_KEYS:
            found = exif.findKey(exiv2.ExifKey(key))
            if found != exif.end():
                iso = _positive_number(found.print(exif))
                if iso is not None:
                    return iso
    except exiv2.Exiv2Error as exc:
        log.info("%s: maker notes unreadable by exiv2 (%s)", path, exc)
    return None


def _positive_number(text: str) -> float | None:
    match = _NUMBER.search(text or "")
    value = float(match.group()) if match else 0.0
    return value if value > 0 else None


def is_copied_exif(key: str, tag: int) -> bool:
    """Whether the EXIF datum ``key`` (e.g. ``"Exif.Photo.FNumber"``), number ``tag``, is carried over."""
    group = key.split(".")[1]
    if group == "Image":
        if tag in _DNG_TAGS:
            return tag in _DNG_DESCRIPTIVE_TAGS
        return tag not in _IMAGE_STRUCTURE_TAGS and tag not in _SONY_RAW_TAGS
    if group == "Photo":
        return tag not in _PHOTO_STRUCTURE_TAGS
    if group == "GPSInfo":
        return True
    # Maker notes: the blob's byte order/offset (MakerNote group) and the groups exiv2 decoded
    # (Canon, Nikon3, Sony1 …, re-encoded on write). Not IFD1/SubIFDs/Interop/MPF: image structure.
    return bool(exiv2.ExifTags.isMakerGroup(group))


# TIFF field types (exiv2 TypeId): BYTE … IFD, LONG8, SLONG8, IFD8.
_TIFF_TYPES = frozenset([*range(1, 14), 16, 17, 18])
_INTEGER_TYPES = frozenset([1, 3, 4, 6, 8, 9, 13, 16, 17, 18])  # interchangeable for a tag's values
_ASCII, _UNDEFINED = 2, 7
_STANDARD_GROUPS = ("Image", "Photo", "GPSInfo", "Iop")


@lru_cache(maxsize=1)
def _standard_tags() -> dict[tuple[str, int], tuple[int, int]]:
    """(group, tag) → (type, count) as EXIF/TIFF define them; count 0 or less means any."""
    return {(group, int(info.tag_)): (int(info.typeId_), int(info.count_))
            for group in _STANDARD_GROUPS for info in exiv2.ExifTags.tagList(group)}


def is_well_formed(group: str, tag: int, type_id: int, count: int) -> bool:
    """Whether an EXIF entry is intact: a TIFF type, values, and (for a standard tag) its type and count."""
    if type_id not in _TIFF_TYPES or count < 1:
        return False
    standard = _standard_tags().get((group, tag))
    if standard is None:
        return True
    want_type, want_count = standard
    same_kind = type_id == want_type or {type_id, want_type} <= _INTEGER_TYPES or {type_id, want_type} == {1, _UNDEFINED}
    return same_kind and (want_count <= 0 or type_id == _ASCII or count == want_count)


def is_copied_xmp(key: str) -> bool:
    """Whether the XMP property ``key`` is carried over (the source's development is not)."""
    return key not in _XMP_SKIPPED_KEYS and not key.startswith(_XMP_SKIPPED_PREFIXES)


def lens_corrections(source_exif, dng_output: bool, linear_source: bool = False) -> dict[str, object]:
    """The embedded lens corrections of a source's exiv2 ``ExifData``, keyed for the output's IFD0.

    Each tag is taken from the raw image's IFD (``NewSubfileType`` 0) when it has it, else from
    the first IFD that does. ``OpcodeList3`` is only for a DNG output, ``OpcodeList2`` only for a
    DNG output of a ``linear_source``.
    """
    opcodes = ((_OPCODE_LIST_3,) + ((_OPCODE_LIST_2,) if linear_source else ())) if dng_output else ()
    wanted = _SONY_LENS_CORRECTION_TAGS + opcodes
    groups = [d.groupName() for d in source_exif if d.tag() == 0x00FE and d.toInt64(0) == 0]
    found: dict[int, tuple[bool, object]] = {}
    for datum in source_exif:
        group = datum.groupName()
        if datum.tag() in wanted and (group == "Image" or group.startswith("SubImage")):
            from_raw_ifd = group in groups
            if datum.tag() not in found or (from_raw_ifd and not found[datum.tag()][0]):
                found[datum.tag()] = (from_raw_ifd, datum.value())
    return {exiv2.ExifKey(tag, "Image").key(): value for tag, (_, value) in found.items()}


def copy_metadata(
    source: Path, target: Path, note: str, extra: Mapping[str, str] | None = None, dng_output: bool = False,
    linear_source: bool = False,
) -> None:
    """Copy ``source``'s photo metadata into ``target`` (an output file) and record ``note``.

    ``target``'s own image-structure tags are kept; embedded lens corrections are carried
    (:func:`lens_corrections`; ``dng_output`` also carries ``OpcodeList3``, and ``OpcodeList2`` of a
    ``linear_source``); ``extra`` (exiv2
    key → value, e.g. the output's ``Exif.Photo.ColorSpace``) is set last. ExifVersion/FlashpixVersion get EXIF 2.32
    defaults when the source has none. A source whose metadata exiv2 cannot read
    is logged as a warning and only the software/processing tags are written; a target that
    cannot be written raises :class:`LowlightError` naming it.
    """
    try:
        _add_metadata(exiv2.ImageFactory.open(str(target)), source, note, extra, dng_output, linear_source)
    except exiv2.Exiv2Error as exc:
        raise LowlightError(target, f"cannot write metadata ({exc})") from exc


def with_metadata(
    source: Path, tiff: bytes, named: Path, note: str, extra: Mapping[str, str] | None = None, dng_output: bool = False,
    linear_source: bool = False,
) -> bytes:
    """``tiff``, the bytes of a small TIFF or DNG, with ``source``'s photo metadata and ``note`` as
    :func:`copy_metadata` writes them into a file: exiv2 rewrites a TIFF whole, so an output's
    tags get their metadata in a small stand-in for it before its pixels are written
    (:mod:`.tiffstrips`). Failure raises :class:`LowlightError` naming ``named``."""
    try:
        image = exiv2.ImageFactory.open(tiff)  # reads from ``tiff``, alive while it is used
        _add_metadata(image, source, note, extra, dng_output, linear_source)
        return bytes(image.io().data())
    except exiv2.Exiv2Error as exc:
        raise LowlightError(named, f"cannot write metadata ({exc})") from exc


def _add_metadata(image, source: Path, note: str, extra: Mapping[str, str] | None, dng_output: bool,
                  linear_source: bool) -> None:
    """Into an opened exiv2 ``image``: what :func:`copy_metadata` copies and records, written."""
    image_source, _source_data = _open_source(source)  # (exiv2 reads from the bytes while the image lives)
    image.readMetadata()
    exif, xmp, iptc = image.exifData(), image.xmpData(), image.iptcData()
    if image_source is not None:
        for datum in image_source.exifData():
            if is_copied_exif(datum.key(), datum.tag()) and is_well_formed(
                datum.groupName(), datum.tag(), int(datum.typeId()), datum.count()
            ):
                exif[datum.key()] = datum.value()
        for key, value in lens_corrections(image_source.exifData(), dng_output, linear_source).items():
            exif[key] = value
        for datum in image_source.xmpData():
            if is_copied_xmp(datum.key()):
                xmp[datum.key()] = datum.value()
        for datum in image_source.iptcData():
            iptc.add(datum)
    for key, value in _EXIF_DEFAULTS.items():
        if key not in exif:
            exif[key] = value
    for key, value in (extra or {}).items():
        exif[key] = value
    exif["Exif.Image.Software"] = SOFTWARE
    _record_history(xmp, note)
    image.writeMetadata()


def _open_source(source: Path) -> tuple[object | None, bytes | None]:
    """The source opened by exiv2 with its metadata read, or ``None`` (warning) if it cannot be.

    exiv2 takes UTF-8 file names only: a source whose name is not valid UTF-8 is read from its
    bytes, which are returned too and must be kept while the image is used.
    """
    data = None
    try:
        if is_utf8_path(source):
            image = exiv2.ImageFactory.open(str(source))
        else:
            data = source.read_bytes()
            image = exiv2.ImageFactory.open(data)
        image.readMetadata()
    except (exiv2.Exiv2Error, OSError) as exc:
        log.warning("%s: metadata not copied, exiv2 cannot read it (%s)", ascii(str(source)), exc)
        return None, None
    return image, data


def is_utf8_path(path: Path) -> bool:
    """Whether ``path`` is valid UTF-8 (what LibRaw and exiv2 need to open it by name)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _record_history(xmp, note: str) -> None:
    """Set CreatorTool and append one ``converted`` event to ``Xmp.xmpMM.History``."""
    xmp["Xmp.xmp.CreatorTool"] = SOFTWARE
    events = {key.split("]")[0] for key in (d.key() for d in xmp) if key.startswith("Xmp.xmpMM.History[")}
    if not events:
        history = exiv2.XmpTextValue()
        history.setXmpArrayType(exiv2.XmpValue.XmpArrayType.xaSeq)
        xmp["Xmp.xmpMM.History"] = history
    item = f"Xmp.xmpMM.History[{len(events) + 1}]"
    struct = exiv2.XmpTextValue()
    struct.setXmpStruct()
    xmp[item] = struct
    xmp[f"{item}/stEvt:action"] = "converted"
    xmp[f"{item}/stEvt:parameters"] = note
    xmp[f"{item}/stEvt:softwareAgent"] = SOFTWARE
    xmp[f"{item}/stEvt:when"] = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
