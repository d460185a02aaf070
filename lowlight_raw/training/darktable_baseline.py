"""darktable's own denoise as an evaluation baseline: what a darktable user already has.

Each dark mosaic is written as a real Bayer or X-Trans DNG (:func:`lowlight_raw.testing.synthetic.write_cfa_dng`,
with the case's black/white levels, camera matrix and white balance) plus an XMP sidecar whose
history holds two modules on top of darktable's defaults:

* **exposure** (v6) ``+log2(ratio)`` EV, the brightening;
* **denoise (profiled)** (v11) in non-local means *auto* mode, told the raw's true Poisson-Gaussian
  profile ``Var = a·x + b`` (the synthetic camera has no darktable profile); the caller tunes its
  ``strength`` and which variance-stabilising transform it uses (:class:`DenoiseSetting`).

``auto_presets_applied="1"`` keeps darktable's automatic presets (filmic, exposure +0.7 EV, colour
calibration) out, so the pipe is: raw prepare, as-shot white balance, highlight clipping,
demosaic, denoise, exposure, the DNG's colour matrix, linear Rec.709 output (= linear sRGB).
``darktable-cli`` renders a whole batch in one start (sidecars ``NAME.dng.xmp`` are read on
import) to a 32-bit float TIFF.

The params are darktable's C structs, little-endian, hex-encoded, as darktable 4.2 reads them
(``src/iop/exposure.c``, ``src/iop/denoiseprofile.c``).
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..errors import LowlightError
from ..pipeline.color import CameraColor
from ..pipeline.noise import NoiseProfile
from ..testing.synthetic import DngSpec, write_cfa_dng

DARKTABLE_CLI = "darktable-cli"
EXPOSURE_VERSION = 6
DENOISE_VERSION = 11
NLMEANS_AUTO = 3  # dt_iop_denoiseprofile_mode_t: 0 nlmeans, 1 wavelets, 2 variance, 3 nlmeans auto, 4 wavelets auto
WAVELET_BANDS = 7  # DT_IOP_DENOISE_PROFILE_BANDS
# exposure v6: int mode; float black, exposure, deflicker_percentile, deflicker_target_level; int compensate_exposure_bias
EXPOSURE_STRUCT = struct.Struct("<i4fi")
# denoiseprofile v11: float radius, nbhood, strength, shadows, bias, scattering, central_pixel_weight,
# overshooting, a[3], b[3]; int mode; float x[6][7], y[6][7]; int wb_adaptive_anscombe,
# fix_anscombe_and_nlmeans_norm, use_new_vst, wavelet_color_mode
DENOISE_STRUCT = struct.Struct(f"<14fi{2 * 6 * WAVELET_BANDS}f4i")
RENDER_TIMEOUT_S = 60.0  # per image, on top of one start


def exposure_params(ev: float) -> bytes:
    """exposure v6 params: manual mode, no black offset, ``ev`` stops, no exposure-bias compensation."""
    return EXPOSURE_STRUCT.pack(0, 0.0, ev, 50.0, -4.0, 0)


@dataclass(frozen=True)
class DenoiseSetting:
    """The tuned part of denoiseprofile's params.

    ``strength`` 1 is darktable's default. ``new_vst`` True is darktable's default for a new
    instance (the generalised Anscombe transform with its shadows/bias corrections, set by the
    auto mode); False is the classic Anscombe transform of older edits, which at very low photon
    counts keeps the colour means better (measured on a flat ×100 frame: 2 % vs 13 % red bias).
    """

    strength: float = 1.0
    new_vst: bool = True


def denoise_params(profile: NoiseProfile, setting: DenoiseSetting) -> bytes:
    """denoiseprofile v11 params: NLM auto mode with ``profile`` for all three channels.

    The rest are the module's defaults (the auto mode derives radius, scattering, shadows and
    bias from the profile itself; "adjust autoset parameters" stays 1).
    """
    curve_x = [i / (WAVELET_BANDS - 1) for i in range(WAVELET_BANDS)] * 6
    curve_y = [0.5] * (6 * WAVELET_BANDS)
    return DENOISE_STRUCT.pack(
        1.0, 7.0, setting.strength, 1.0, 0.0, 0.0, 0.1, 1.0,  # radius, nbhood, strength, shadows, bias, scattering, centre weight, overshooting
        *[profile.a] * 3, *[profile.b] * 3,
        NLMEANS_AUTO, *curve_x, *curve_y,
        1, 1, int(setting.new_vst), 1,  # wb-adaptive Anscombe, fixed norms, VST, wavelets in Y0U0V0
    )


def history_xmp(ev: float, profile: NoiseProfile, denoise: DenoiseSetting | None) -> str:
    """An XMP sidecar whose darktable history is exposure ``ev`` and (unless ``denoise`` is None) denoise."""
    steps = [("exposure", EXPOSURE_VERSION, exposure_params(ev))]
    if denoise is not None:
        steps.append(("denoiseprofile", DENOISE_VERSION, denoise_params(profile, denoise)))
    items = "".join(
        f'     <rdf:li darktable:num="{i}" darktable:operation="{op}" darktable:enabled="1"'
        f' darktable:modversion="{version}" darktable:params="{params.hex()}"'
        f' darktable:multi_name="" darktable:multi_priority="0"/>\n'
        for i, (op, version, params) in enumerate(steps)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/"\n'
        f'   darktable:xmp_version="5" darktable:auto_presets_applied="1" darktable:history_end="{len(steps)}">\n'
        "   <darktable:history>\n    <rdf:Seq>\n"
        f"{items}"
        "    </rdf:Seq>\n   </darktable:history>\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
    )


@dataclass(frozen=True)
class DarkRaw:
    """One dark mosaic and what darktable needs to render it like our pipeline does."""

    mosaic: np.ndarray  # (H, W) normalised mosaic, (raw - black) / (white - black)
    black: float  # DN
    white: float  # DN
    color: CameraColor
    ratio: float  # the exposure brings it up by this factor
    profile: NoiseProfile  # Var = a·x + b of the normalised mosaic
    pattern: str = "RGGB"  # its CFA (lowlight_raw.layouts.base.mosaic_from_rgb letters: 4 for Bayer, 36 for X-Trans)


def write_dng(path: Path, raw: DarkRaw) -> Path:
    """``raw`` as a DNG of its CFA with its levels, camera matrix and as-shot white balance."""
    span = raw.white - raw.black
    dn = np.clip(np.rint(raw.mosaic.astype(np.float64) * span + raw.black), 0, raw.white).astype(np.uint16)
    black = int(round(raw.black))
    spec = DngSpec(
        pattern=raw.pattern, black=(black,) * 4, white=int(raw.white), cam_xyz=raw.color.cam_xyz,
        as_shot_neutral=tuple(float(v) for v in raw.color.as_shot_neutral), make="Lowlight",
        camera_model="Synthetic Bayer" if len(raw.pattern) == 4 else "Synthetic X-Trans",
    )
    return write_cfa_dng(path, dn, spec)


def available() -> bool:
    """Whether ``darktable-cli`` is on the PATH."""
    return shutil.which(DARKTABLE_CLI) is not None


def render(raws: list[DarkRaw], denoise: DenoiseSetting | None, work: Path | None = None) -> list[np.ndarray]:
    """darktable's linear sRGB ``(H, W, 3)`` float32 renderings of ``raws`` (one darktable start).

    ``denoise`` None renders with exposure only. ``work`` keeps the DNGs, sidecars and TIFFs
    there (default: a temporary folder, removed afterwards).
    """
    if not available():
        raise LowlightError(None, f"{DARKTABLE_CLI} not found: install darktable for the darktable baseline")
    with tempfile.TemporaryDirectory(prefix="lowlight-dt-") as tmp:
        folder = Path(work) if work is not None else Path(tmp)
        (folder / "out").mkdir(parents=True, exist_ok=True)
        names = []
        for i, raw in enumerate(raws):
            dng = write_dng(folder / f"case{i:04d}.dng", raw)
            dng.with_name(dng.name + ".xmp").write_text(history_xmp(math.log2(raw.ratio), raw.profile, denoise))
            names.append(dng)
        outputs = [folder / "out" / f"{dng.stem}.tif" for dng in names]
        for output in outputs:  # darktable would pick a new name beside an old one
            output.unlink(missing_ok=True)
        command = [DARKTABLE_CLI, *[arg for dng in names for arg in ("--import", str(dng))],
                   str(folder / "out" / "$(FILE_NAME)"), "--out-ext", "tif", "--icc-type", "LIN_REC709",
                   "--apply-custom-presets", "false",  # no data.db: other darktable instances may run
                   "--core", "--configdir", str(Path(tmp) / "config"), "--library", ":memory:",
                   "--conf", "plugins/imageio/format/tiff/bpp=32", "--conf", "plugins/imageio/format/tiff/compress=0"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S * (1 + len(raws)))
        except subprocess.TimeoutExpired as exc:
            raise LowlightError(None, f"{DARKTABLE_CLI} did not finish {len(raws)} images in {exc.timeout:.0f} s") from None
        missing = [p.name for p in outputs if not p.exists()]
        if done.returncode != 0 or missing:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise LowlightError(None, f"{DARKTABLE_CLI} failed (exit {done.returncode}, {len(missing)} images missing): {last[0]}")
        return [np.asarray(tifffile.imread(p), dtype=np.float32)[..., :3] for p in outputs]
