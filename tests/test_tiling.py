"""Tiled inference equals one whole-image pass, whatever the tile size; bf16 where the CPU has it,
scoring as float32; the CPU thread policy."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lowlight_raw import OPENMP_SPIN_COUNT
from lowlight_raw.errors import Cancelled
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.pipeline.device import (
    DEFAULT_THREADS,
    HALF_FLOATS_FROM_PIXELS,
    PRECISION_VARIABLE,
    choose_device,
    cpu_has_bf16,
    cpu_threads,
    idle_cpus,
    use_bf16,
)
from lowlight_raw.pipeline.network_input import NoiseConditioning, amplified_planes, network_input
from lowlight_raw.pipeline.noise import NoiseProfile, read_variance_for
from lowlight_raw.pipeline.tiling import DEFAULT_TILE, LARGE_PHOTO_TILE, automatic_tile, run_tiled


@pytest.fixture(scope="module")
def random_net():
    torch.manual_seed(0)
    net = SIDUNet(UNetConfig(width=8, depth=4)).eval()
    torch.nn.init.normal_(net.head.weight, std=0.1)  # a zero head would make every pass trivially equal
    return net


@pytest.mark.parametrize("tile,overlap", [(48, 16), (64, 32), (96, 48)])
def test_tiled_matches_untiled(random_net, tile, overlap):
    x = np.random.default_rng(0).random((8, 101, 163), dtype=np.float32)  # not multiples of 8
    whole = run_tiled(random_net, x, torch.device("cpu"), tile=4096)
    tiled = run_tiled(random_net, x, torch.device("cpu"), tile=tile, overlap=overlap)
    assert whole.shape == tiled.shape == (202, 326, 3)
    assert np.abs(tiled - whole).max() < 1e-3


def test_noise_channels_made_per_tile_equal_the_whole_network_input(random_net):
    # the engine keeps only the amplified planes and lets the tiler add their noise sigma per tile
    packed = np.random.default_rng(1).random((4, 101, 163), dtype=np.float32) * 0.01
    profile = NoiseProfile(2e-4, read_variance_for(2e-4), "test")
    whole_input = network_input(packed, 100.0, profile)
    planes = amplified_planes(packed, 100.0, profile)
    np.testing.assert_array_equal(planes, whole_input[:4])
    expected = run_tiled(random_net, whole_input, torch.device("cpu"), tile=48, overlap=16, bf16=False)
    per_tile = run_tiled(random_net, planes, torch.device("cpu"), tile=48, overlap=16, bf16=False,
                         conditioning=NoiseConditioning(profile, 100.0))
    np.testing.assert_allclose(per_tile, expected, atol=1e-6)
    in_place = packed.copy()
    assert amplified_planes(in_place, 100.0, profile, in_place=True) is in_place  # memory holds the planes once
    np.testing.assert_array_equal(in_place, planes)
    # a linear raw's half floats stay half floats, amplified in float32 and rounded once; the tiler
    # takes them as float32, and its output may be half floats too (the engine's result)
    half = amplified_planes(packed.astype(np.float16), 100.0, profile)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, planes, rtol=2.0**-10, atol=1e-5)  # rounded before and after the gain
    from_half = run_tiled(random_net, half, torch.device("cpu"), tile=48, overlap=16, bf16=False,
                          conditioning=NoiseConditioning(profile, 100.0), dtype=np.float16)
    assert from_half.dtype == np.float16
    np.testing.assert_allclose(from_half, expected, rtol=0.01, atol=1e-3)


def test_a_remosaicing_network_takes_planar_tiles_and_computes_the_same_from_either(monkeypatch):
    torch.manual_seed(1)
    xtrans = SIDUNet(UNetConfig.for_layout("xtrans", 8, 2, remosaic=True)).eval()
    torch.nn.init.normal_(xtrans.head.weight, std=0.1)
    assert xtrans.input_memory_format == torch.contiguous_format  # its re-mosaic gathers the planes' blocks
    assert SIDUNet(UNetConfig.for_layout("bayer", 8, 2)).input_memory_format == torch.channels_last
    packed = np.random.default_rng(2).random((9, 40, 58), dtype=np.float32) * 0.01
    profile = NoiseProfile(2e-4, read_variance_for(2e-4), "test")
    planes = amplified_planes(packed, 100.0, profile)

    def tiled() -> np.ndarray:
        return run_tiled(xtrans, planes, torch.device("cpu"), tile=24, overlap=8, bf16=False, conditioning=NoiseConditioning(profile, 100.0))

    planar = tiled()
    monkeypatch.setattr(SIDUNet, "input_memory_format", property(lambda self: torch.channels_last))
    np.testing.assert_allclose(planar, tiled(), rtol=0.0, atol=1e-6)


def test_progress_and_cancel(random_net):
    x = np.zeros((8, 64, 64), dtype=np.float32)
    fractions = []
    run_tiled(random_net, x, torch.device("cpu"), tile=32, overlap=8, on_progress=fractions.append)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 1
    with pytest.raises(Cancelled):
        run_tiled(random_net, x, torch.device("cpu"), tile=32, overlap=8, should_cancel=lambda: True)


def test_device_choice():
    assert choose_device("auto").type in {"cpu", "cuda", "mps"}
    assert choose_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            choose_device("cuda")


@pytest.mark.parametrize("layout", ["bayer", "xtrans", "linear"])
def test_bf16_scores_as_float32_on_real_synthetic_raws(layout, monkeypatch):
    """Where the CPU computes bf16 natively the engine runs the network in it; the evaluation's
    sRGB PSNR on three photos shot ×100 too dark moves by less than 0.05 dB (measured ≤ 0.02)."""
    from skimage import data

    from lowlight_raw.networks.catalog import SHIPPED_MODELS
    from lowlight_raw.networks.weights import load_model
    from lowlight_raw.training.evaluate import model_camera, psnr, render, same_scene_cases

    cpu = torch.device("cpu")
    assert use_bf16(cpu) == cpu_has_bf16()
    model, _ = load_model(SHIPPED_MODELS["fast"][layout], cpu)
    cases = same_scene_cases([data.astronaut(), data.coffee(), data.chelsea()], "x100", layout, seed=7, crop=288)
    score = lambda: np.mean([psnr(render(model_camera(model, c.sample), c.sample), c.reference) for c in cases])  # noqa: E731
    default = score()
    monkeypatch.setenv(PRECISION_VARIABLE, "fp32")
    assert not use_bf16(cpu)
    float32 = score()
    assert float32 > 20.0 and abs(default - float32) < 0.05, (default, float32)


def test_threads_follow_the_idle_cores_and_omp_num_threads(monkeypatch):
    idle = idle_cpus(0.01)
    assert idle is None or 0.0 <= idle <= len(os.sched_getaffinity(0))
    assert 1 <= cpu_threads() <= DEFAULT_THREADS
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == DEFAULT_THREADS  # the user's choice: torch read it at start


@pytest.mark.parametrize("given,expected", [({}, (str(OPENMP_SPIN_COUNT), None)), ({"OMP_WAIT_POLICY": "PASSIVE"}, (None, "PASSIVE")),
                                            ({"GOMP_SPINCOUNT": "50"}, ("50", None))])
def test_importing_the_package_makes_openmp_spin_briefly_unless_told(given, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    code = "import lowlight_raw, os, torch; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert printed == [str(v) for v in expected]


REFAULTS = """
import resource, sys, torch
from lowlight_raw.machine import return_large_blocks
from lowlight_raw.pipeline.device import freed_memory_reused
pixels, daemon = sys.argv[1], sys.argv[2] == "daemon"
if daemon:
    return_large_blocks()
def faults(megabytes=64):  # 64 MB: as large as a 1024² tile's activations, freed at once
    for _ in range(20):  # the heap settles around the block over the first few (up to 9 seen)
        torch.ones(megabytes << 18)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(megabytes << 18)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
if pixels == "default":
    reused, during = False, faults()
else:
    with freed_memory_reused(int(pixels)) as reused:
        during = faults()
print(reused, during, faults(), faults(128))  # while the photo is restored, then after it (and 128 MB blocks)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_blocks_are_reused_while_a_photo_is_restored_except_a_large_one_and_returned_after_it_in_the_daemon():
    def faults(pixels: str, process: str = "cli") -> tuple[str, int, int, int]:
        out = subprocess.run([sys.executable, "-c", REFAULTS, pixels, process], capture_output=True, text=True, check=True)
        reused, during, after, after_larger = out.stdout.split()
        return reused, int(during), int(after), int(after_larger)

    pages = 10 * (64 << 20) // 4096
    default_reused, default_faults, _, _ = faults("default")
    reused, reuse_faults, cli_after, _ = faults(str(24_000_000))
    large_reused, large_faults, _, _ = faults(str(HALF_FLOATS_FROM_PIXELS))
    daemon_reused, daemon_faults, _, daemon_after = faults(str(24_000_000), "daemon")
    assert default_reused == "False" and reused == large_reused == daemon_reused == "True"
    assert default_faults >= 0.9 * pages, "by default each 64 MB block is mapped anew and its pages faulted in"
    assert reuse_faults <= 0.2 * pages and daemon_faults <= 0.2 * pages, "kept in the heap: the pages stay"
    assert large_faults >= 0.9 * pages, "a large photo's memory goes back as before: its 768² tiles' blocks are smaller"
    # After the photo the daemon maps large blocks anew (its file bytes), unless glibc's bins hold a free
    # chunk that fits: glibc serves from its bins before it asks its thresholds, and the photo's 64 MB chunk
    # stays there when a small block lies above it (so a 64 MB block is reused in 2 runs of 5; the daemon's
    # trim after each large message, machine.release_memory, returns its pages). Blocks larger than any
    # chunk the photo left (128 MB) show the policy: with the photo's (256 MB kept) they would stay too.
    assert daemon_after >= 0.9 * 2 * pages, "after the photo the daemon returns large blocks again"
    assert cli_after <= 0.2 * pages, "a command line run keeps them for its next photo"


def test_a_large_photo_gets_smaller_tiles_unless_one_is_asked_for():
    # the tiles' activations weigh on a large photo's memory (tiling.LARGE_PHOTO_TILE); smaller photos keep the faster tile
    assert automatic_tile(HALF_FLOATS_FROM_PIXELS - 1) == DEFAULT_TILE
    assert automatic_tile(HALF_FLOATS_FROM_PIXELS) == LARGE_PHOTO_TILE < DEFAULT_TILE
