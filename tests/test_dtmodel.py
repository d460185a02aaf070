"""The darktable 5.6+ ``.dtmodel`` package (lowlight_raw/darktable_ai): it validates, its graphs are
the torch networks, and through an emulation of darktable's pre- and post-processing a dark raw
comes out denoised, without seams, as a DNG darktable-cli renders (4.2 here, 5.4 in the chroot)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
skimage_data = pytest.importorskip("skimage.data")

from lowlight_raw.cli import main  # noqa: E402
from lowlight_raw.darktable_ai.blind import BlindGraph  # noqa: E402
from lowlight_raw.darktable_ai.emulate import (  # noqa: E402
    mirror,
    open_graphs,
    restore_bayer,
    restore_linear,
    seam_weights,
    write_bayer_dng,
    write_linear_dng,
)
from lowlight_raw.darktable_ai.package import PACKAGE_ID, TILE, validate_package, write_package  # noqa: E402
from lowlight_raw.errors import LowlightError  # noqa: E402
from lowlight_raw.layouts.registry import layout_class  # noqa: E402
from lowlight_raw.networks.catalog import shipped_weights  # noqa: E402
from lowlight_raw.networks.weights import load_model  # noqa: E402
from lowlight_raw.pipeline import restore as restore_module  # noqa: E402
from lowlight_raw.training.darktable_baseline import history_xmp  # noqa: E402
from lowlight_raw.training.dataset import make_sample  # noqa: E402
from lowlight_raw.training.evaluate import HIGH_ISO_A, case_of, dark_raw, model_camera, naive_srgb, psnr, render  # noqa: E402
from lowlight_raw.training.sensor_noise import sample_sensor  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHROOT_SCRIPT = REPO / "scripts" / "darktable5_chroot.sh"
HAVE_DARKTABLE_CLI = shutil.which("darktable-cli") is not None


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return write_package(tmp_path_factory.mktemp("dtmodel") / f"{PACKAGE_ID}.dtmodel", "fast").path


@pytest.fixture(scope="module")
def graphs(package):
    return open_graphs(package, threads=1)


def _scene() -> np.ndarray:
    """A 1024 × 1024 photo (scikit-image's astronaut, upsampled): 2 × 2 of darktable's Bayer tiles."""
    photo = skimage_data.astronaut().astype(np.float32) / 255.0
    return np.ascontiguousarray(photo.repeat(2, axis=0).repeat(2, axis=1))


def _dark_case(ratio: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    sample = make_sample(_scene(), rng, ratio=ratio, sensor=sample_sensor(rng, a_range=HIGH_ISO_A), pattern="GRBG")
    return case_of(sample)


def _emulated_bayer(graph, case, strength: float = 1.0):
    """The case's dark mosaic (in its own phase, as ADC values) through darktable's Bayer path →
    (uint16 CFA, the DarkRaw it came from)."""
    raw = dark_raw(case)
    adc = np.clip(np.rint(raw.mosaic.astype(np.float64) * (raw.white - raw.black) + raw.black), 0, raw.white)
    return restore_bayer(graph, adc, raw.pattern, (raw.black,) * 4, raw.white, raw.color, strength), raw


def _camera_of(cfa: np.ndarray, raw, ratio: float) -> np.ndarray:
    """A written CFA → amplified camera RGB by the plain (bilinear) demosaic."""
    normalised = (cfa.astype(np.float32) - raw.black) / (raw.white - raw.black)
    layout = layout_class("bayer").for_pattern(raw.pattern, *normalised.shape)
    packed = torch.from_numpy(np.clip(layout.pack(normalised) * ratio, 0.0, 1.0))[None]
    return layout.naive_rgb(packed)[0].permute(1, 2, 0).numpy()


# -- the package ---------------------------------------------------------------------------------


def test_the_package_has_darktables_layout_and_contract(package: Path) -> None:
    info = validate_package(package)
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == [f"{PACKAGE_ID}/config.json", f"{PACKAGE_ID}/model_bayer.onnx",
                                              f"{PACKAGE_ID}/model_linear.onnx"]
        config = json.loads(archive.read(f"{PACKAGE_ID}/config.json"))
    assert config["task"] == "rawdenoise" and config["backend"] == "onnx" and config["version"] == "1.0"
    assert config["attributes"]["input_sizes"] == [TILE]
    assert config["attributes"]["model_bayer"]["input_kind"] == "bayer_v1"
    assert config["attributes"]["variants"]["linear"]["onnx"] == "model_linear.onnx"
    assert {slot: (g.input_shape, g.output_shape) for slot, g in info.graphs.items()} == {
        "model_bayer": ((1, 4, TILE, TILE), (1, 3, 2 * TILE, 2 * TILE)),
        "model_linear": ((1, 3, TILE, TILE), (1, 3, TILE, TILE)),
    }
    assert all(g.opset <= 20 for g in info.graphs.values())
    assert not list(package.parent.glob(".*.tmp")), "no temporary file left"


def test_the_sdk_validates_it(package: Path, tmp_path: Path) -> None:
    """darktable-ai-sdk's ``dtai validate`` (a build-time tool) on the package's files."""
    dtai = shutil.which("dtai", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if dtai is None:
        pytest.skip("darktable-ai-sdk (dtai) not installed")
    (tmp_path / "models" / PACKAGE_ID).mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "check"\n')
    (tmp_path / "models" / PACKAGE_ID / "model.yaml").write_text(
        f'id: {PACKAGE_ID}\nname: "x"\ndescription: "x"\ntask: rawdenoise\ntype: multi\n')
    with zipfile.ZipFile(package) as archive:
        archive.extractall(tmp_path / "output")
    done = subprocess.run([dtai, "validate", PACKAGE_ID], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Result: PASS" in done.stdout, done.stdout + done.stderr
    assert "model_bayer: model_bayer.onnx" in done.stdout and "model_linear: model_linear.onnx" in done.stdout


@pytest.mark.parametrize("change, message", [
    (lambda c: c["attributes"]["model_bayer"].update(wb_norm="sometimes"), "model_bayer.wb_norm is 'sometimes'"),
    (lambda c: c.pop("task"), "missing task"),
    (lambda c: c["attributes"]["variants"]["bayer"].update(output_scale="match_gain"), "variants.bayer must repeat"),
    (lambda c: c.update(version="1"), "version '1' is not X.Y"),
])
def test_the_validator_names_what_is_wrong(package: Path, tmp_path: Path, change, message: str) -> None:
    broken = tmp_path / "broken.dtmodel"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("config.json"):
                config = json.loads(data)
                change(config)
                data = json.dumps(config).encode()
            target.writestr(name, data)
    with pytest.raises(LowlightError, match=message):
        validate_package(broken)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's notice that this is its TorchScript exporter
def test_a_graph_with_a_noise_input_is_refused(package: Path, tmp_path: Path) -> None:
    """The contract is blind: a graph that asks for a second input (a noise level) fails validation."""
    class TwoInputs(torch.nn.Module):
        def forward(self, tile, noise):
            return torch.nn.functional.pixel_shuffle(tile[:, :3].repeat(1, 4, 1, 1), 2) * noise

    graph = tmp_path / "two.onnx"
    torch.onnx.export(TwoInputs(), (torch.zeros(1, 4, TILE, TILE), torch.zeros(1, 1, 1, 1)), str(graph), opset_version=17,
                      dynamo=False)
    broken = tmp_path / "two.dtmodel"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            target.writestr(name, graph.read_bytes() if name.endswith("model_bayer.onnx") else source.read(name))
    with pytest.raises(LowlightError, match="2 inputs and 1 outputs"):
        validate_package(broken)


def test_export_command_line(tmp_path: Path, capsys) -> None:
    assert main(["export-dtmodel", "-o", str(tmp_path / "lc.dtmodel"), "--model", "fast-licence-clean"]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'lc.dtmodel'}: model_bayer.onnx [1, 4, 512, 512]")
    assert set(validate_package(tmp_path / "lc.dtmodel").graphs) == {"model_bayer"}  # no linear network shipped
    assert main(["export-dtmodel", "-o", str(tmp_path / "missing" / "x.dtmodel")]) == 1
    assert capsys.readouterr().err == f"lowlight-raw: error: {tmp_path / 'missing' / 'x.dtmodel'}: its folder does not exist\n"
    before = (tmp_path / "lc.dtmodel").read_bytes()
    assert main(["export-dtmodel", "-o", str(tmp_path / "lc.dtmodel")]) == 1  # never replaced unless asked
    assert capsys.readouterr().err == f"lowlight-raw: error: {tmp_path / 'lc.dtmodel'}: already exists (--overwrite replaces it)\n"
    assert (tmp_path / "lc.dtmodel").read_bytes() == before
    assert main(["export-dtmodel", "-o", str(tmp_path / "lc.dtmodel"), "--overwrite"]) == 0
    assert set(validate_package(tmp_path / "lc.dtmodel").graphs) == {"model_bayer", "model_linear"}


# -- the graphs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["bayer", "linear"])
def test_the_onnx_graph_is_the_torch_network(graphs, layout: str) -> None:
    network, _ = load_model(shipped_weights("fast", layout))
    blind = BlindGraph(network.to(memory_format=torch.contiguous_format), TILE).eval()
    rng = np.random.default_rng(3)
    channels = 4 if layout == "bayer" else 3
    scene = np.repeat(np.linspace(0.0005, 0.004, TILE, dtype=np.float32)[None, None, None], TILE, axis=2)
    tile = (scene + rng.normal(0.0, 0.0008, size=(1, channels, TILE, TILE))).astype(np.float32)
    with torch.no_grad():
        expected = blind(torch.from_numpy(tile)).numpy()
    got = graphs[layout].run(tile)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max()


# -- through darktable's path (emulated) ---------------------------------------------------------


def test_mirror_reflects_without_repeating_the_edge() -> None:
    assert mirror(np.arange(-3, 9), 0, 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert mirror(np.arange(-2, 6), 1, 5).tolist() == [4, 3, 2, 1, 2, 3, 4, 3]  # within [1, 5)


def test_ramps_sum_to_one_across_a_seam() -> None:
    coords = np.arange(0, 400)
    first = seam_weights(coords, 0, 200, 64, False, True)
    second = seam_weights(coords, 200, 400, 64, True, False)
    inside = (coords >= 136) & (coords < 264)
    np.testing.assert_allclose((first + second)[inside], 1.0)
    assert first[coords < 136].min() == 1.0 and second[coords >= 264].min() == 1.0


@pytest.fixture(scope="module")
def dark_x100(graphs):
    case = _dark_case(100.0)
    cfa, raw = _emulated_bayer(graphs["bayer"], case)
    return case, cfa, raw


def test_a_dark_x100_raw_comes_out_denoised(dark_x100, monkeypatch) -> None:
    case, cfa, raw = dark_x100
    network, _ = load_model(shipped_weights("fast"))
    emulated = psnr(render(_camera_of(cfa, raw, 100.0), case.sample), case.reference)
    # the graphs carry the network, not the engine's dark-level curve measured on each photo
    # (restore.dark_level_curve: here 25.95 → 27.18 dB), so they are held to the engine without it
    monkeypatch.setattr(restore_module, "dark_level_curve", lambda *args: None)
    ours = psnr(render(model_camera(network, case.sample), case.sample), case.reference)
    naive = psnr(naive_srgb(case), case.reference)
    assert emulated > naive + 10.0, (emulated, naive)
    assert emulated > ours - 1.0, (emulated, ours)


def test_no_seam_at_the_tile_borders(dark_x100, graphs) -> None:
    """Where darktable's tiles meet (sensor row and column 896 here, ± the red origin's and the
    packing's one-pixel shifts), the result differs from one whose tiles meet elsewhere (the raw
    cropped by 256: one tile) by far less than the noise left in either, and no more than away
    from the seam."""
    case, cfa, raw = dark_x100
    shift, seam = 256, 2 * (TILE - 64)
    cropped = replace(case, sample=replace(case.sample, raw=case.sample.raw[:, shift // 2 :, shift // 2 :]))
    other, _ = _emulated_bayer(graphs["bayer"], cropped)
    tiled, single = _camera_of(cfa, raw, 100.0)[shift:, shift:], _camera_of(other, raw, 100.0)
    truth = case.sample.target.transpose(1, 2, 0)[shift:, shift:]
    difference, noise = (tiled - single).mean(axis=2), (single - truth).mean(axis=2)
    near = slice(seam - shift - 8, seam - shift + 8)
    for diff, left in ((difference, noise), (difference.T, noise.T)):
        at_seam = np.sqrt(np.mean(diff[:, near] ** 2))
        assert at_seam < 0.25 * np.sqrt(np.mean(left[:, near] ** 2)), at_seam
        assert at_seam < 1.5 * np.sqrt(np.mean(diff[:, 100:500] ** 2)) + 1e-4, at_seam


@pytest.mark.parametrize("ratio", [1.0, 10.0, 300.0])
def test_from_x1_to_x300(graphs, ratio: float) -> None:
    """Every darkness comes out better than the plain demosaic of the raw, a clean one unharmed."""
    case = _dark_case(ratio, seed=int(ratio))
    cfa, raw = _emulated_bayer(graphs["bayer"], case)
    emulated = psnr(render(_camera_of(cfa, raw, ratio), case.sample), case.reference)
    naive = psnr(naive_srgb(case), case.reference)
    assert emulated > naive + {1.0: 0.0, 10.0: 3.0, 300.0: 10.0}[ratio], (emulated, naive)


def test_strength_zero_writes_the_source_and_highlights_keep_their_level(graphs) -> None:
    spec_white, black = 16383, 512
    rng = np.random.default_rng(5)
    scene = np.full((600, 700), 0.002)
    scene[100:200, 100:300] = 0.9  # a lamp
    adc = np.rint(black + (scene + rng.normal(0, 0.0005, scene.shape)) * (spec_white - black))
    color = dark_raw(_dark_case(100.0)).color
    assert np.array_equal(restore_bayer(graphs["bayer"], adc, "RGGB", (black,) * 4, spec_white, color, strength=0.0),
                          (np.clip(adc, 0, spec_white) + 0.5).astype(np.uint16))
    out = restore_bayer(graphs["bayer"], adc, "RGGB", (black,) * 4, spec_white, color).astype(np.float64)
    lamp = (out[110:190, 110:290] - black) / (spec_white - black)
    assert abs(lamp.mean() - 0.9) < 0.01


def test_linear_path_denoises_an_xtrans_raw(graphs) -> None:
    """X-Trans reaches the linear graph after darktable's demosaic (here our clean rendering, after Markesteijn's)."""
    rng = np.random.default_rng(9)
    photo = skimage_data.astronaut().astype(np.float32)[:480, :480] / 255.0
    sample = make_sample(photo, rng, ratio=100.0, sensor=sample_sensor(rng, a_range=HIGH_ISO_A), layout="xtrans")
    case = case_of(sample)
    xtrans = layout_class("xtrans")
    demosaiced = xtrans.clean_rgb(torch.from_numpy(np.minimum(sample.raw, 1.0)[None]), np.ones(3))[0]
    demosaiced = demosaiced.permute(1, 2, 0).numpy()
    restored = restore_linear(graphs["linear"], demosaiced, sample.color)
    emulated = psnr(render(np.clip(restored * 100.0, 0, 1), sample), case.reference)
    plain = psnr(render(np.clip(demosaiced * 100.0, 0, 1), sample), case.reference)
    assert emulated > plain + 10.0, (emulated, plain)


# -- the DNG it writes, in real darktable --------------------------------------------------------


def _write_outputs(folder: Path, dark_x100, graphs) -> list[Path]:
    """The emulated Bayer DNG and a LinearRaw DNG of the linear path, each with an exposure-only sidecar."""
    case, cfa, raw = dark_x100
    bayer = write_bayer_dng(folder / "bayer.dng", cfa, raw.pattern, (raw.black,) * 4, raw.white, raw.color)
    camera = (cfa.astype(np.float32) - raw.black) / (raw.white - raw.black)
    layout = layout_class("bayer").for_pattern(raw.pattern, *camera.shape)
    demosaiced = layout.naive_rgb(torch.from_numpy(layout.pack(np.clip(camera, 0, 1)))[None])[0].permute(1, 2, 0).numpy()
    linear = write_linear_dng(folder / "linear.dng", restore_linear(graphs["linear"], demosaiced, raw.color), raw.color)
    for dng in (bayer, linear):
        dng.with_name(dng.name + ".xmp").write_text(history_xmp(np.log2(raw.ratio), raw.profile, None))
    return [bayer, linear]


def _check_renderings(outputs: list[Path], dark_x100) -> None:
    case = dark_x100[0]
    for tif in outputs:
        rgb = np.asarray(tifffile.imread(tif), dtype=np.float32)[..., :3]
        assert rgb.shape[:2] == case.reference.shape[:2], tif
        srgb = np.clip(rgb, 0, 1) ** (1 / 2.2)
        assert psnr(srgb, case.reference) > psnr(naive_srgb(case), case.reference) + 5.0, tif


def _cli_arguments(dngs: list[Path], out: Path, configdir: Path) -> list[str]:
    return [*[a for d in dngs for a in ("--import", str(d))], str(out / "$(FILE_NAME)"), "--out-ext", "tif",
            "--icc-type", "LIN_REC709", "--apply-custom-presets", "false", "--core", "--configdir", str(configdir),
            "--library", ":memory:", "--conf", "plugins/imageio/format/tiff/bpp=32",
            "--conf", "plugins/imageio/format/tiff/compress=0"]


@pytest.mark.darktable
@pytest.mark.skipif(not HAVE_DARKTABLE_CLI, reason="darktable-cli not installed")
def test_darktable_4_renders_the_written_dngs(tmp_path: Path, dark_x100, graphs) -> None:
    dngs = _write_outputs(tmp_path, dark_x100, graphs)
    done = subprocess.run(["darktable-cli", *_cli_arguments(dngs, tmp_path / "out", tmp_path / "config")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_renderings([tmp_path / "out" / "bayer.tif", tmp_path / "out" / "linear.tif"], dark_x100)


@pytest.fixture(scope="module")
def darktable5_chroot() -> Path:
    """The cached darktable 5.x chroot (scripts/darktable5_chroot.sh), or a one-line skip."""
    if os.geteuid() != 0:
        pytest.skip("the darktable 5 chroot is built and entered as root")
    build = subprocess.run([str(CHROOT_SCRIPT), "build"], capture_output=True, text=True, timeout=3600)
    if build.returncode == 3:
        pytest.skip(build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr[-3000:]
    return Path(build.stdout.strip().splitlines()[-1])


@pytest.mark.darktable5
def test_darktable_5_renders_the_written_dngs(darktable5_chroot: Path, dark_x100, graphs, tmp_path_factory) -> None:
    folder = Path(tmp_path_factory.mktemp("dt5"))  # under /tmp, bound into the chroot at the same path
    dngs = _write_outputs(folder, dark_x100, graphs)
    env = dict(os.environ, LR_DT5_BINDS=str(folder), HOME=str(folder))
    done = subprocess.run([str(CHROOT_SCRIPT), "run", "darktable-cli", *_cli_arguments(dngs, folder / "out", folder / "config")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_renderings([folder / "out" / "bayer.tif", folder / "out" / "linear.tif"], dark_x100)
