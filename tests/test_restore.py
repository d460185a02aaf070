"""A clean photo is not softened: the network's share follows the noise, a sharp demosaic does the rest."""

import numpy as np
import pytest
import skimage.data
import tifffile
import torch
from scipy.ndimage import gaussian_filter, uniform_filter

import lowlight_raw.pipeline.false_colour as false_colour_module
import lowlight_raw.pipeline.restore as restore_module
from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.files.raw import read_raw
from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import RCD_REACH, BayerLayout, rcd_demosaic, simple_demosaic
from lowlight_raw.layouts.linear import LinearLayout
from lowlight_raw.layouts.xtrans import XTransLayout, _by_colour, cfa_colors, pattern_letters
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.pipeline import device as device_module
from lowlight_raw.pipeline.color import camera_to_linear, srgb_encode
from lowlight_raw.pipeline.denoise import denoise_planes
from lowlight_raw.pipeline.false_colour import false_colour_filter, suppress_false_colour
from lowlight_raw.pipeline.noise import NoiseProfile, noise_sigma_map, read_variance_for
from lowlight_raw.pipeline.restore import (
    CLIPPED_DARK_LEVEL_FULL_SIGMA,
    CLIPPED_DARK_LEVEL_LEAST,
    CLIPPED_DARK_LEVEL_LEAST_SIGMA,
    DENOISE_FROM_SIGMA,
    DENOISE_FULL_SIGMA,
    NETWORK_FROM_SIGMA,
    SHARE_STEP,
    blend_clean_rendering,
    chroma_smoothing_strength,
    dark_level_curve,
    dark_level_strength,
    denoise_strength,
    luminance_weights,
    mid_grey_sigma,
    network_from_sigma,
    network_share,
    pixel_shares,
    restore,
    smooth_chroma,
)
from lowlight_raw.pipeline.tiling import run_tiled
from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, write_cfa_dng
from lowlight_raw.training.unprocess import sample_params, unprocess

WB = np.array([2.1, 1.0, 1.7])


def scale_dark_levels(full: np.ndarray, wb: np.ndarray, levels) -> np.ndarray:
    """In place: each pixel of ``full`` scaled by ``levels``' scale of its luminance (what restore's
    false-colour pass does besides)."""
    scales = levels.scales(torch.from_numpy(full.astype(np.float32) @ luminance_weights(wb)))
    if scales is not None:
        full *= scales.numpy()[..., None]
    return full


def calibrate_dark_levels(full: np.ndarray, inputs: np.ndarray, layout, wb: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """In place: ``full``'s dark levels measured (``dark_level_curve``) and scaled."""
    levels = dark_level_curve(full, inputs, layout, wb, strength)
    return full if levels is None else scale_dark_levels(full, wb, levels)


def finish(full: np.ndarray, inputs: np.ndarray, layout, wb: np.ndarray, denoising: float = 0.0) -> np.ndarray:
    """In place: what ``restore`` does last: ``full``'s dark levels measured, its fine false colour taken
    out, then its levels scaled."""
    levels = dark_level_curve(full, inputs, layout, wb)
    suppress_false_colour(full, wb, false_colour_filter(denoising))
    return full if levels is None else scale_dark_levels(full, wb, levels)


def _profile(a: float) -> NoiseProfile:
    return NoiseProfile(a, read_variance_for(a), "test")


def test_network_share_follows_the_noise_after_the_gain(monkeypatch):
    clean_share = BayerLayout.clean_network_share
    assert 0.0 < clean_share < 1.0 and network_share(_profile(4e-6), 1.0, BayerLayout) == clean_share  # clean, ISO 200
    assert network_share(_profile(4e-6), 1.0, LinearLayout) == 0.0  # a clean linear raw: its own pixels
    assert 0.5 < network_share(_profile(2e-4), 30.0, BayerLayout) < 1.0  # a blend at mid-grey
    assert network_share(_profile(2e-4), 100.0, BayerLayout) == 1.0
    shares = [network_share(_profile(1e-4), gain, BayerLayout) for gain in (1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0)]
    assert shares == sorted(shares) and shares[0] == clean_share < shares[3] < 1.0 and shares[-1] == 1.0
    at = lambda sigma: network_share(NoiseProfile(0.0, sigma**2, "b only"), 1.0, LinearLayout)  # noqa: E731
    assert network_from_sigma(LinearLayout) == NETWORK_FROM_SIGMA == network_from_sigma(BayerLayout)
    assert at(NETWORK_FROM_SIGMA) == pytest.approx(0.0, abs=1e-9) and 0.0 < at(1.5 * NETWORK_FROM_SIGMA) < 1.0
    assert at(LinearLayout.full_network_sigma) == pytest.approx(1.0)
    monkeypatch.setattr(LinearLayout, "network_from_sigma", 0.001)  # a layout may start its ramp elsewhere
    assert network_from_sigma(LinearLayout) == 0.001 and at(0.001) == pytest.approx(0.0, abs=1e-9) and at(0.002) > 0.0


def test_each_pixels_share_follows_the_noise_at_its_own_level():
    x10 = NoiseProfile(5.747e-5, 1.727e-7, "A7 III at ISO 6400")  # ×10: a blend at mid-grey
    mid_grey = np.broadcast_to((0.18 / WB).astype(np.float32), (64, 96, 3)).copy()  # white-balanced luminance 0.18
    shares = pixel_shares(mid_grey, x10, 10.0, BayerLayout, WB)
    assert shares.shape == (16, 24)
    np.testing.assert_allclose(shares.numpy(), network_share(x10, 10.0, BayerLayout), rtol=1e-5)  # to the photo's edges
    halves = mid_grey * np.where(np.arange(96) < 48, 0.05, 3.0)[None, :, None].astype(np.float32)  # shadow | highlight
    shares = pixel_shares(halves, x10, 10.0, BayerLayout, WB).numpy()
    assert shares[:, :8].min() > 0.5 > network_share(x10, 10.0, BayerLayout) > 0.2 > shares[:, -8:].max()  # measured 0.60, 0.22, 0.15
    assert np.all(np.diff(shares, axis=1) <= 1e-6)  # falling across the edge, never rising
    assert shares.min() >= BayerLayout.clean_network_share
    assert pixel_shares(halves, _profile(2e-4), 3000.0, BayerLayout, WB) is None  # the network alone everywhere


def test_a_blend_by_pixel_shares_is_the_whole_images_and_leaves_the_network_alone_where_they_are_1(monkeypatch):
    planes = np.random.default_rng(6).random((4, 20, 28), dtype=np.float32) * 0.6
    network_output = np.random.default_rng(7).random((40, 56, 3), dtype=np.float32)
    clean = blend_clean_rendering(None, 0.0, planes, BayerLayout, WB)
    shares = torch.from_numpy(np.random.default_rng(8).uniform(0.2, 0.9, (10, 14)).astype(np.float32))
    shares[:3] = 1.0  # the first 12 rows: the network alone (the upsampling reads one block row beyond them)
    upsampled = torch.nn.functional.interpolate(shares[None, None], scale_factor=SHARE_STEP, mode="bilinear")[0, 0, ..., None].numpy()
    expected = upsampled * network_output + (1.0 - upsampled) * clean
    monkeypatch.setattr(restore_module, "CLEAN_BAND", 4)  # blocks of 8 × 12 px: two and three share blocks
    monkeypatch.setattr(restore_module, "CLEAN_COLUMNS", 6)
    blended = blend_clean_rendering(network_output.copy(), shares, planes, BayerLayout, WB)
    np.testing.assert_allclose(blended, expected, atol=1e-6)
    np.testing.assert_array_equal(blended[:8], network_output[:8])  # blocks whose shares are all 1: as they were
    np.testing.assert_array_equal(blend_clean_rendering(network_output.copy(), torch.ones(10, 14), planes, BayerLayout, WB),
                                  network_output)


def test_the_chroma_smoothing_follows_the_noise_and_goes_part_of_the_way():
    x30, x100, x300 = (NoiseProfile(5.747e-5, 1.727e-7, "A7 III at ISO 6400"),) * 2 + (NoiseProfile(2.162e-4, 5.067e-7, "25600"),)
    assert chroma_smoothing_strength(x30, 30.0) == 0.0 and chroma_smoothing_strength(x300, 300.0) == 1.0
    assert 0.3 < chroma_smoothing_strength(x100, 100.0) < 0.6
    noisy = np.random.default_rng(9).random((32, 48, 3), dtype=np.float32) * 0.3
    whole = smooth_chroma(noisy.copy(), WB)
    np.testing.assert_allclose(smooth_chroma(noisy.copy(), WB, 0.25), 0.75 * noisy + 0.25 * whole, atol=1e-6)


def test_the_clean_rendering_is_denoised_as_the_noise_warrants():
    clean, x3, x10 = (NoiseProfile(a, b, "A7 III") for a, b in ((3.9e-6, 6.1e-9), (1.482e-5, 3.51e-8), (5.747e-5, 1.727e-7)))
    assert mid_grey_sigma(clean, 1.0) < DENOISE_FROM_SIGMA and denoise_strength(clean, 1.0) == 0.0  # ×1 at ISO 400: as it is
    assert denoise_strength(x3, 3.0) == 1.0  # ×3 at ISO 1600: all of it, the second stage too
    assert 0.0 < denoise_strength(x3, 1.5) < 1.0  # between: part of the first stage
    assert mid_grey_sigma(x10, 10.0) > DENOISE_FULL_SIGMA and denoise_strength(x10, 10.0) == 1.0


class NoNetwork(torch.nn.Module):
    """Fails if called: a share of 0 must not run the network."""

    def forward(self, x):  # noqa: ARG002
        raise AssertionError("the network ran for a clean photo")


@pytest.mark.parametrize(("layout", "ratio"), [(BayerLayout, 1.0), (BayerLayout, 100.0), (XTransLayout, 10.0),
                                             (LinearLayout, 1.0)], ids=["bayer-clean", "bayer-dark", "xtrans-blend", "linear-own"])
def test_a_large_photo_is_restored_in_half_floats_as_in_float32(layout, ratio, monkeypatch):
    # every step (the tiles' sum, the blend, the chroma smoothing, the dark levels) works on float32
    # blocks of a half-float result: it is the float32 result rounded, a few roundings at most
    cpu = torch.device("cpu")
    planes = np.random.default_rng(5).random((layout.channels, 24, 30), dtype=np.float32) * 0.5
    tiny = SIDUNet(UNetConfig.for_layout(layout.kind, width=4, depth=2)).eval()
    profile = _profile(2e-4 if ratio > 1.0 else 4e-6)
    single, share = restore(tiny, planes, layout, profile, ratio, WB, cpu)
    monkeypatch.setattr(device_module, "HALF_FLOATS_FROM_PIXELS", 1)
    half, half_share = restore(tiny, planes.astype(np.float16) if layout is LinearLayout else planes, layout, profile,
                               ratio, WB, cpu)
    assert single.dtype == np.float32 and half.dtype == np.float16 and half_share == share
    # near black the dark levels' curve is measured on the rounded result, and the whole result's chroma
    # smoothing fits its colours on it (measured: 1.8e-3 at one pixel of 19,440, X-Trans)
    np.testing.assert_allclose(half, single, rtol=4 * 2.0**-11, atol=2e-5)


def test_a_clean_raw_gets_its_layouts_clean_share_and_a_dark_one_only_the_network():
    cpu = torch.device("cpu")
    linear = np.random.default_rng(1).random((12, 16, 16), dtype=np.float32) * 0.5
    full, share = restore(NoNetwork(), linear, LinearLayout, _profile(4e-6), 1.0, WB, cpu)
    assert share == LinearLayout.clean_network_share == 0.0  # a linear raw's own pixels; the network never runs
    own = torch.nn.functional.pixel_shuffle(torch.from_numpy(linear)[None], 2)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(full, suppress_false_colour(own.copy(), WB, false_colour_filter(0.0)), atol=1e-6)
    planes = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32) * 0.5
    tiny = SIDUNet(UNetConfig.for_layout("bayer", width=4, depth=2)).eval()
    full, share = restore(tiny, planes, BayerLayout, _profile(4e-6), 1.0, WB, cpu)
    dark, dark_share = restore(tiny, planes, BayerLayout, _profile(2e-4), 1000.0, WB, cpu)
    assert share == BayerLayout.clean_network_share and 0.0 < share < 1.0 and dark_share == 1.0
    # a dark one: the network (given the planes' noise), its chroma smoothed, its dark levels calibrated
    network_alone = run_tiled(tiny, np.concatenate([planes, noise_sigma_map(planes, _profile(2e-4), 1000.0)]), cpu)
    np.testing.assert_allclose(dark, finish(smooth_chroma(network_alone.copy(), WB), planes, BayerLayout, WB, 1.0), atol=1e-6)
    clean = rcd_demosaic(torch.from_numpy(planes)[None], WB)[0].permute(1, 2, 0).numpy()
    network_alone = run_tiled(tiny, np.concatenate([planes, noise_sigma_map(planes, _profile(4e-6), 1.0)]), cpu)
    shares = pixel_shares(network_alone, _profile(4e-6), 1.0, BayerLayout, WB)  # a clean photo's: its layout's share
    assert shares is not None and float(shares.min()) == pytest.approx(share) and float(shares.max()) < 0.2
    shares = torch.nn.functional.interpolate(shares[None, None], scale_factor=SHARE_STEP, mode="bilinear")[0, 0, ..., None].numpy()
    blended = (shares * network_alone + (1.0 - shares) * clean).astype(np.float32)
    np.testing.assert_allclose(full, finish(blended, planes, BayerLayout, WB), atol=1e-6)
    with pytest.raises(ValueError, match="4 amplified planes"):  # not the whole network input
        restore(tiny, np.concatenate([planes, planes]), BayerLayout, _profile(2e-4), 100.0, WB, cpu)
    xtrans = np.random.default_rng(2).random((9, 16, 16), dtype=np.float32) * 0.5
    tiny = SIDUNet(UNetConfig.for_layout("xtrans", width=4, depth=2)).eval()
    full, share = restore(tiny, xtrans, XTransLayout, _profile(4e-6), 1.0, WB, cpu)
    assert share == XTransLayout.clean_network_share and full.shape == (48, 48, 3)  # with the colour-difference demosaic
    full, share = restore(tiny, xtrans, XTransLayout, _profile(2e-4), 1000.0, WB, cpu)
    assert share == 1.0 and full.shape == (48, 48, 3)  # a dark one: the network alone


def test_rcd_demosaic_is_exact_on_gradients_keeps_samples_and_is_sharper_than_bilinear():
    yy, xx = np.mgrid[0:32, 0:36].astype(np.float32)
    scene = np.stack([0.01 * yy + 0.02 * xx, 0.03 * yy + 0.01 * xx + 0.1, 0.02 * yy + 0.03 * xx + 0.2], axis=-1)
    packed = torch.from_numpy(BayerLayout("RGGB", 32, 36).pack(mosaic_from_rgb(scene, "RGGB")))[None]
    out = rcd_demosaic(packed, WB)[0].permute(1, 2, 0).numpy()
    inner = slice(RCD_REACH, -RCD_REACH)  # beyond its reach the border reflects
    np.testing.assert_allclose(out[inner, inner], scene[inner, inner], atol=1e-5)
    noisy = packed + torch.from_numpy(np.random.default_rng(3).normal(0.0, 0.05, packed.shape).astype(np.float32)) - 0.3
    out = rcd_demosaic(noisy, WB)  # unclamped, partly below 0: the dark-level calibration's input
    assert torch.isfinite(out).all()
    sites = {0: (0, 0, 0), 1: (1, 0, 1), 2: (1, 1, 0), 3: (2, 1, 1)}  # packed plane: channel, row and column phase
    for plane, (channel, row, column) in sites.items():
        torch.testing.assert_close(out[0, channel, row::2, column::2], noisy[0, plane], rtol=0, atol=1e-6)
    odd = rcd_demosaic(noisy[..., :3, :5], WB)  # a block narrower than its reach
    assert odd.shape == (1, 3, 6, 10) and torch.isfinite(odd).all()
    photo = gaussian_filter(skimage.data.astronaut()[100:228, 150:278].astype(np.float32) / 255, (0.5, 0.5, 0))
    params = sample_params(np.random.default_rng(0))
    camera = unprocess(photo, params)
    packed = torch.from_numpy(BayerLayout("RGGB", 128, 128).pack(mosaic_from_rgb(camera, "RGGB")))[None]
    error = {name: np.mean((out[0].permute(1, 2, 0).numpy()[4:-4, 4:-4] - camera[4:-4, 4:-4]) ** 2)
             for name, out in (("rcd", rcd_demosaic(packed, params.color.wb)), ("bilinear", simple_demosaic(packed)))}
    assert 10 * np.log10(error["bilinear"] / error["rcd"]) > 2.0, error


def test_xtrans_clean_demosaic_is_sharper_than_its_plain_one_and_never_undershoots():
    photo = gaussian_filter(skimage.data.astronaut()[100:228, 150:278].astype(np.float32) / 255, (0.5, 0.5, 0))
    params = sample_params(np.random.default_rng(0))
    camera = unprocess(photo, params)
    pattern = pattern_letters((0, 0))
    layout = XTransLayout.for_pattern(pattern, 128, 128)
    packed = torch.from_numpy(layout.pack(mosaic_from_rgb(camera, pattern)))[None]
    top, _, left, _ = layout.padding
    error = {name: np.mean((out[0].permute(1, 2, 0).numpy()[top + 6 : top + 122, left + 6 : left + 122] - camera[6:-6, 6:-6]) ** 2)
             for name, out in (("clean", XTransLayout.clean_rgb(packed, params.color.wb)), ("plain", XTransLayout.naive_rgb(packed)))}
    assert 10 * np.log10(error["plain"] / error["clean"]) > 6.0, error  # measured: 10.4 dB
    # A saturated red against near-black: the colour differences are not smooth across the edge,
    # and red and blue must not dip below their own samples there (dark tones show it most).
    edge = np.where(np.arange(60)[None, :, None] < 30, [[[0.8, 0.1, 0.02]]], [[[0.01, 0.01, 0.01]]]).repeat(48, axis=0)
    layout = XTransLayout.for_pattern(pattern, 48, 60)
    out = XTransLayout.clean_rgb(torch.from_numpy(layout.pack(mosaic_from_rgb(edge.astype(np.float32), pattern)))[None], WB)
    assert out[0, 0].min() >= 0.01 - 1e-6 and out[0, 2].min() >= 0.01 - 1e-6


@pytest.mark.parametrize("cells", [(2, 2), (3, 5), (16, 12)])
def test_xtrans_clean_demosaic_keeps_its_samples_and_a_flat_colour_up_to_the_border(cells):
    """On any block size (smaller than its mirrored margin too) and on negative values (the
    dark-level calibration renders unclamped planes): every sample comes back as it was, and a
    flat colour comes back flat everywhere, the border included."""
    height, width = cells
    planes = torch.from_numpy(np.random.default_rng(7).random((1, 9, height, width), dtype=np.float32) - 0.2)
    out = XTransLayout.clean_rgb(planes, WB)[0].permute(1, 2, 0).numpy()
    mosaic = torch.nn.functional.pixel_shuffle(_by_colour(planes), 3)[0, 0].numpy()
    colours = cfa_colors(3 * height, 3 * width)
    np.testing.assert_allclose(np.take_along_axis(out, colours[..., None].astype(np.int64), axis=2)[..., 0], mosaic, atol=1e-6)
    colour = np.array([0.3, -0.01, 0.12], np.float32)
    flat = np.broadcast_to(colour, (3 * height, 3 * width, 3))
    packed = XTransLayout((0, 0), 3 * height, 3 * width).pack(mosaic_from_rgb(flat, pattern_letters((0, 0))))
    out = XTransLayout.clean_rgb(torch.from_numpy(packed)[None], WB)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(colour, out.shape), atol=1e-6)  # (packed: to whole 6×6 periods)


@pytest.mark.parametrize(("pattern", "least_gain_db"), [("RGGB", 3.5), (pattern_letters((1, 4)), 2.5)],
                         ids=["Bayer", "X-Trans"])  # measured: +4.55 dB, +3.41 dB
def test_a_clean_sharp_photo_comes_back_sharper_than_a_plain_demosaic(tmp_path, pattern, least_gain_db):
    """bench/no_harm.py in small: a well-exposed ISO-200 raw through the engine, against the truth."""
    photo = gaussian_filter(skimage.data.chelsea()[50:306, 100:356].astype(np.float32) / 255, (0.5, 0.5, 0))
    camera = unprocess(photo, sample_params(np.random.default_rng(0)))
    scene = camera / camera.max() * 0.9
    spec = DngSpec(pattern=pattern, exif={"Exif.Photo.ISOSpeedRatings": "200"})
    source = write_cfa_dng(tmp_path / "clean.dng", dark_exposure(scene, spec, 1.0, 4e-6, 2e-8, np.random.default_rng(1)), spec)
    reference = srgb_encode(camera_to_linear(scene, read_raw(source).color))
    enhancer = Enhancer("fast", device="cpu")
    psnr = {}
    for strength in (1.0, 0.0):
        options = EnhanceOptions("tiff", ev=0.0, strength=strength, linear_tiff=True, output_dir=tmp_path / str(strength))
        out = srgb_encode(tifffile.imread(enhancer.enhance(source, options).output).astype(np.float32) / 65535)
        psnr[strength] = 10 * np.log10(1.0 / np.mean((out[4:-4, 4:-4].astype(np.float64) - reference[4:-4, 4:-4]) ** 2))
    assert psnr[1.0] > psnr[0.0] + least_gain_db, psnr


def test_chroma_smoothing_keeps_luminance_and_colour_edges_removes_colour_noise_and_is_the_same_in_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    height, width = 96, 160
    # a red and a green of the same luminance (0.25): an edge a luminance-guided filter would blur
    balanced = np.where(np.arange(width)[None, :, None] < 80, [[[0.4, 0.2, 0.15]]], [[[0.15, 0.35, 0.25]]]).repeat(height, axis=0)
    noisy = (balanced + 0.01 * rng.standard_normal((height, width, 3))).astype(np.float32) / WB.astype(np.float32)
    smoothed = smooth_chroma(noisy.copy(), WB)
    luminance = lambda rgb: (rgb * WB).mean(-1)
    np.testing.assert_allclose(luminance(smoothed), luminance(noisy), atol=1e-5)
    chroma = lambda rgb: rgb * WB - luminance(rgb)[..., None]
    flat = (slice(8, -8), slice(4, 30))  # 50 px and more from the edge
    assert chroma(smoothed)[flat].std(axis=(0, 1)).max() < 0.25 * chroma(noisy)[flat].std(axis=(0, 1)).min()  # measured 0.04
    for columns, colour in ((slice(72, 78), balanced[0, 0]), (slice(82, 88), balanced[0, -1])):  # 2–8 px from the edge
        np.testing.assert_allclose((smoothed * WB)[8:-8, columns].mean((0, 1)), colour, rtol=0.05)  # measured within 2.2 %
    monkeypatch.setattr(restore_module, "CHROMA_BAND", 24)  # a multiple of the subsampling, as the band must be
    monkeypatch.setattr(restore_module, "CHROMA_COLUMNS", 36)  # and the blocks' width
    np.testing.assert_array_equal(smooth_chroma(noisy.copy(), WB), smoothed)


@pytest.mark.parametrize("layout", [BayerLayout, XTransLayout, LinearLayout], ids=lambda c: c.kind)
def test_the_clean_rendering_made_in_blocks_is_the_whole_images(layout, monkeypatch):
    assert restore_module.CLEAN_HALO == 6  # the least even halo that covers Bayer's 10 px (5 packed) and X-Trans's 15 px (5 cells)
    planes = np.random.default_rng(3).random((layout.channels, 38, 20), dtype=np.float32) * 0.8
    whole = layout.clean_rgb(torch.from_numpy(planes)[None], WB)[0].permute(1, 2, 0).numpy()
    monkeypatch.setattr(restore_module, "CLEAN_BAND", 6)
    monkeypatch.setattr(restore_module, "CLEAN_COLUMNS", 8)
    network_output = np.random.default_rng(4).random(whole.shape, dtype=np.float32)
    np.testing.assert_allclose(blend_clean_rendering(None, 0.0, planes, layout, WB), whole, atol=1e-6)
    blended = blend_clean_rendering(network_output.copy(), 0.25, planes, layout, WB)
    np.testing.assert_allclose(blended, 0.25 * network_output + 0.75 * whole, atol=1e-6)


@pytest.mark.parametrize("layout", [BayerLayout, XTransLayout, LinearLayout], ids=lambda c: c.kind)
def test_the_denoised_clean_rendering_made_in_bands_is_the_whole_images(layout, monkeypatch):
    rng = np.random.default_rng(3)
    truth = 0.1 + gaussian_filter(rng.random((layout.channels, 180, 150)), (0, 2, 2))
    noise = NoiseProfile(5.747e-5, 1.727e-7, "A7 III, ISO 6400").amplified(10.0)
    planes = (truth + np.sqrt(noise.a * truth + noise.b) * rng.standard_normal(truth.shape)).astype(np.float32)
    denoised = denoise_planes(torch.from_numpy(planes), layout, WB, noise, 1.0)
    whole = layout.clean_rgb(denoised.clamp(0.0, 1.0)[None], WB)[0].permute(1, 2, 0).numpy()
    monkeypatch.setattr(restore_module, "DENOISE_BAND", 24)  # areas that start off the decimations' grid too
    monkeypatch.setattr(restore_module, "DENOISE_COLUMNS", 12)
    monkeypatch.setattr(restore_module, "CLEAN_BAND", 10)
    monkeypatch.setattr(restore_module, "CLEAN_COLUMNS", 8)
    in_bands = blend_clean_rendering(None, 0.0, planes, layout, WB, noise, 1.0)
    # the second stage's block transforms round as the area's size has them (measured ≤ 6e-6 apart);
    # X-Trans's demosaic may then take the other direction at a pixel where both were as homogeneous
    # (3 of 729,000 pixels)
    assert np.isclose(in_bands, whole, rtol=0.0, atol=1e-5).mean() > 1.0 - 1e-4
    assert np.abs(denoised.numpy() - truth).mean() < 0.6 * np.abs(planes - truth).mean()  # it did denoise


def _lifted_dark_scene(seed: int = 6, lift: float = 0.02, noise: float = 0.03):
    """A Bayer scene (camera RGB) whose left half is dark (0.003–0.03, textured) and right half mid-grey
    (0.15–0.3), its noisy packed planes (the network input, sigma ``noise``) and a "network result":
    the truth, the dark half lifted by ``lift`` (what a base clamped at 0 does to noisy blacks)."""
    rng = np.random.default_rng(seed)
    height, width = 96, 160
    texture = gaussian_filter(rng.random((height, width)), 3)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    dark = np.broadcast_to(np.arange(width)[None, :] < width // 2, (height, width))
    level = np.where(dark, 0.003 + 0.027 * texture, 0.15 + 0.15 * texture)
    truth = (level[..., None] / WB).astype(np.float32)  # grey after the white balance
    planes = BayerLayout("RGGB", height, width).pack(mosaic_from_rgb(truth, "RGGB"))
    planes = (planes + noise * rng.standard_normal(planes.shape)).astype(np.float32)
    inputs = np.concatenate([planes, np.full_like(planes, noise)])
    result = truth + np.where(dark, lift, 0.0)[..., None].astype(np.float32) / WB.astype(np.float32)
    return truth, inputs, result.astype(np.float32), dark


def test_dark_level_calibration_brings_lifted_blacks_back_to_their_mean_and_leaves_the_rest():
    truth, inputs, result, dark = _lifted_dark_scene()
    inside = np.zeros_like(dark)
    inside[4:-4, 4 : dark.shape[1] // 2 - 4] = True  # the dark half, away from the border and the edge
    bright = np.zeros_like(dark)
    bright[4:-4, dark.shape[1] // 2 + 4 : -4] = True
    luminance = lambda rgb: (rgb * WB).mean(-1)  # noqa: E731
    assert luminance(result)[inside].mean() > 2.0 * luminance(truth)[inside].mean()  # 0.036 against 0.016
    calibrated = calibrate_dark_levels(result.copy(), inputs, BayerLayout, WB)
    # measured: 0.0165 against 0.0154 (+7 %, the significance margin of 96 × 160 px); the lift was +130 %
    np.testing.assert_allclose(luminance(calibrated)[inside].mean(), luminance(truth)[inside].mean(), rtol=0.12)
    np.testing.assert_allclose(luminance(calibrated)[bright].mean(), luminance(result)[bright].mean(), rtol=0.005)  # −0.1 %
    ratio = calibrated / result  # each pixel scaled, its colour kept
    np.testing.assert_allclose(ratio, ratio[..., :1].repeat(3, axis=-1), rtol=1e-5)


@pytest.mark.parametrize("layout", [BayerLayout, XTransLayout, LinearLayout], ids=lambda c: c.kind)
def test_blocks_rendered_together_are_each_blocks_own_rendering(layout):
    rng = np.random.default_rng(13)
    planes = (0.3 * rng.random((layout.channels, 60, 72)) - 0.02).astype(np.float32)  # some below black: unclamped
    blocks = [((0, 12), (0, 12)), ((12, 24), (12, 24)), ((24, 36), (24, 36)), ((12, 24), (36, 48)), ((56, 60), (0, 12))]
    together = restore_module.clean_blocks(planes, layout, WB, blocks, clamp=False)
    for (rows, columns), rendering in zip(blocks, together):  # the three inner blocks: contexts of one shape, rendered as one batch
        alone = restore_module.clean_block(planes, layout, WB, rows, columns, clamp=False)
        assert rendering.shape == alone.shape == (3, 12 * layout.scale if rows != (56, 60) else 4 * layout.scale, 12 * layout.scale)
        np.testing.assert_array_equal(rendering.numpy(), alone.numpy())


@pytest.mark.parametrize("denoising", [0.0, 1.0], ids=["clean", "noisy"])
def test_the_false_colour_pass_scales_the_dark_levels_as_scaling_after_it_would(denoising, monkeypatch):
    _, inputs, result, _ = _lifted_dark_scene()
    result *= 1.0 + 0.3 * np.random.default_rng(12).standard_normal(result.shape).astype(np.float32)  # colour noise
    levels = dark_level_curve(result, inputs, BayerLayout, WB)
    assert levels is not None
    monkeypatch.setattr(false_colour_module, "BAND", 32)  # several bands and blocks
    monkeypatch.setattr(false_colour_module, "COLUMNS", 48)
    colour_filter = false_colour_filter(denoising)
    separately = scale_dark_levels(suppress_false_colour(result.copy(), WB, colour_filter), WB, levels)
    together = suppress_false_colour(result.copy(), WB, colour_filter, levels.scales)
    np.testing.assert_allclose(together, separately, rtol=1e-5, atol=1e-7)
    assert np.abs(together - suppress_false_colour(result.copy(), WB, colour_filter)).max() > 1e-3  # it did scale


def test_dark_level_calibration_leaves_a_flat_noise_field_and_an_unbiased_result_as_they_are():
    rng = np.random.default_rng(8)
    planes = (0.2 / np.array([WB[0], 1.0, 1.0, WB[2]]))[:, None, None] + 0.05 * rng.standard_normal((4, 64, 96))
    inputs = np.concatenate([planes, np.full_like(planes, 0.05)]).astype(np.float32)
    plain = BayerLayout.naive_rgb(torch.from_numpy(inputs[None, :4]))[0].permute(1, 2, 0).numpy()
    # a denoiser without bias: the plain demosaic averaged over 7 × 7 (noise left over, from the same noise)
    result = uniform_filter(plain, (7, 7, 1), mode="reflect").astype(np.float32)
    calibrated = calibrate_dark_levels(result.copy(), inputs, BayerLayout, WB)
    # measured: −0.24 % in each channel, where the left-over noise is 5–14 % of the level
    np.testing.assert_allclose(calibrated.mean(axis=(0, 1)), result.mean(axis=(0, 1)), rtol=0.005)
    flat = np.broadcast_to((0.2 / WB).astype(np.float32), result.shape).copy()  # a perfect denoiser: kept as it is
    np.testing.assert_array_equal(calibrate_dark_levels(flat.copy(), inputs, BayerLayout, WB), flat)
    _, inputs, result, dark = _lifted_dark_scene(lift=0.0)  # nothing lifted: little brought down
    calibrated = calibrate_dark_levels(result.copy(), inputs, BayerLayout, WB)
    luminance = lambda rgb: (rgb * WB).mean(-1)  # noqa: E731
    for half, tolerance in ((dark, 0.05), (~dark, 0.005)):  # measured: −2.6 % (the curve's noise), −0.1 %
        np.testing.assert_allclose(luminance(calibrated)[half].mean(), luminance(result)[half].mean(), rtol=tolerance)


@pytest.mark.parametrize("layout", [BayerLayout, XTransLayout, LinearLayout], ids=lambda c: c.kind)
def test_the_dark_level_curve_measured_in_blocks_is_the_whole_images_and_a_sample_of_them_close_to_it(layout, monkeypatch):
    rng = np.random.default_rng(9)
    planes = (gaussian_filter(rng.random((layout.channels, 60, 72)), (0, 4, 4)) ** 3 * 0.6).astype(np.float32)  # dark tones
    planes += 0.03 * rng.standard_normal(planes.shape).astype(np.float32)
    inputs = np.concatenate([planes, np.full_like(planes, 0.03)])
    whole = layout.clean_rgb(torch.from_numpy(np.clip(planes, 0.0, 1.0))[None], WB)[0].permute(1, 2, 0).numpy()
    result = np.maximum(whole, 0.0) + np.float32(0.01)  # lifted everywhere, most in relative terms in the blacks
    monkeypatch.setattr(restore_module, "DARK_LEVEL_BLOCK", 1000)  # one block: the whole image's rendering
    reference = calibrate_dark_levels(result.copy(), inputs, layout, WB)
    assert (reference <= result + 1e-7).all() and (reference < result - 1e-4).mean() > 0.3
    monkeypatch.setattr(restore_module, "DARK_LEVEL_BLOCK", 12)  # even: an X-Trans block starts on the same kind of cell
    np.testing.assert_allclose(calibrate_dark_levels(result.copy(), inputs, layout, WB), reference, atol=1e-6)
    monkeypatch.setattr(restore_module, "DARK_LEVEL_SAMPLE", result.shape[0] * result.shape[1] // 4)  # a quarter of them
    np.testing.assert_allclose(calibrate_dark_levels(result.copy(), inputs, layout, WB), reference, rtol=0.1, atol=1e-3)


def test_dark_levels_are_calibrated_at_every_noise_unless_the_blacks_were_clipped():
    from lowlight_raw.training.sweep import A7III_NOISE

    strength = lambda iso, ratio, clipped: dark_level_strength(NoiseProfile(*A7III_NOISE[iso], "A7 III"), ratio, clipped)  # noqa: E731
    assert strength(400, 1.0, False) == strength(6400, 100.0, False) == strength(25600, 300.0, False) == 1.0
    # a converter's clipped blacks: their stand-in is too dark for dark greys, the more so the more noise
    assert strength(400, 1.0, True) == strength(6400, 100.0, True) == strength(6400, 150.0, True) == 1.0
    assert strength(25600, 300.0, True) == CLIPPED_DARK_LEVEL_LEAST == 0.5
    at = lambda sigma: dark_level_strength(NoiseProfile(0.0, sigma**2, "b only"), 1.0, True)  # noqa: E731
    assert at(CLIPPED_DARK_LEVEL_FULL_SIGMA) == pytest.approx(1.0)
    assert at(CLIPPED_DARK_LEVEL_LEAST_SIGMA) == pytest.approx(0.5) == at(3 * CLIPPED_DARK_LEVEL_LEAST_SIGMA)
    ramp = [at(sigma) for sigma in np.geomspace(CLIPPED_DARK_LEVEL_FULL_SIGMA, CLIPPED_DARK_LEVEL_LEAST_SIGMA, 6)]
    assert ramp == sorted(ramp, reverse=True)


def test_the_dark_level_curve_is_np_interp_within_a_hair():
    rng = np.random.default_rng(10)
    knots = np.quantile(rng.gamma(1.5, 0.05, 100_000), np.linspace(0.01, 0.99, 48))  # bins' mean levels, dense in the darks
    values = np.minimum(1.0, 0.4 + 0.6 * np.sqrt(knots / knots[30]))  # darks brought down, the rest kept
    x = torch.from_numpy(rng.uniform(-0.01, 0.5, 200_000).astype(np.float32))
    curve = restore_module._PiecewiseLinear(knots, values)
    np.testing.assert_allclose(curve(x.clone()).numpy(), np.interp(x.numpy(), knots, values), atol=2e-4)  # measured 1.4e-5
    np.testing.assert_allclose(restore_module._PiecewiseLinear(knots[:1], values[:1])(x.clone()).numpy(), values[0], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(37, 53), (8, 12), (3, 2)])
def test_block_means_are_the_pooled_means_over_what_the_photo_has(shape, dtype):
    rgb = np.random.default_rng(sum(shape)).random(shape + (3,), dtype=np.float32).astype(dtype)
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1), 4, ceil_mode=True)
    means = restore_module._block_means(rgb, 4, 8)  # bands of 8 rows: the last one short
    assert means.dtype == torch.float32 and means.shape == pooled.shape
    torch.testing.assert_close(means, pooled, rtol=0.0, atol=3e-7)
