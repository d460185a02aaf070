"""Speed, peak memory and bf16 accuracy of the engine on a synthetic 24 MP RAW; prints a table.

    .venv/bin/python bench/bench_engine.py                 # CPU: the shipped models
    .venv/bin/python bench/bench_engine.py --device cuda   # on a GPU (scripts/gpu_bench.sh)
    .venv/bin/python bench/bench_engine.py --megapixels 2 --models fast --widths 32
    .venv/bin/python bench/bench_engine.py --layout xtrans --models fast   # a Fujifilm-like raw
    .venv/bin/python bench/bench_engine.py --exposure clean --models fast  # a clean raw: network + demosaic blend

Rows, each model in fresh subprocesses so that a row's peak RSS is its own:

* **end-to-end**: ``Enhancer.enhance`` (decode → network → colour → write DNG);
* **network**: on the CPU the tiled network as the engine runs it; on CUDA one forward pass
  over the whole image already on the GPU. With the PSNR of its output against the clean scene
  (linear camera RGB), so bf16 can be compared with float32;
* **daemon**: per-file time of one ``lr-bridge`` job of ``--daemon-files`` copies of the raw
  (the daemon's default precision: bf16 on CUDA).

On CUDA every measure runs in float32 and in bf16 autocast (the engine's choice there), with
peak GPU memory (``torch.cuda.max_memory_allocated``); on the CPU those rows say
"n/a (no CUDA)". Every row names its device, the card's name on CUDA.
Targets: 2-core CPU, fast model: end-to-end ≤ 10 s and ≤ 3 GB peak RSS. GPU, quality model,
bf16: end-to-end ≤ 0.5 s, network ≤ 50 ms, PSNR within 0.05 dB of float32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATIO = 100.0  # the synthetic raw is exposed 100× too dark; the network-alone rows amplify it back
# --exposure: how the raw is shot (ratio too dark, noise a and b, ISO). A clean one gets the
# network blended with the layout's clean rendering (restore.py), so only its end-to-end row differs.
EXPOSURES = {"dark": (RATIO, 2e-4, 2e-7, 6400), "clean": (1.0, 6e-6, 2e-9, 200)}
NO_CUDA = "n/a (no CUDA)"
TARGETS = {"e2e_s": 0.5, "network_s": 0.05, "bf16_psnr_loss_db": 0.05}  # GPU, quality model, bf16


def bench_scene(megapixels: float) -> np.ndarray:
    """The clean linear camera-RGB scene ``(H, W, 3)`` of ``megapixels`` (3:2): the chart tiled."""
    from lowlight_raw.synthetic import test_scene

    width = int(round(np.sqrt(megapixels * 1e6 * 1.5) / 2)) * 2
    height = int(round(width / 1.5 / 2)) * 2
    return np.tile(test_scene(500, 750), (height // 500 + 1, width // 750 + 1, 1))[:height, :width]


def synthesise_raw(path: Path, megapixels: float, layout: str = "bayer", exposure: str = "dark") -> Path:
    """A DNG of :func:`bench_scene` of sensor ``layout`` shot as ``exposure`` says (:data:`EXPOSURES`)."""
    from lowlight_raw.synthetic import DngSpec, dark_exposure, dark_linear_exposure, write_cfa_dng, write_linear_dng
    from lowlight_raw.xtrans import pattern_letters

    ratio, a, b, iso = EXPOSURES[exposure]
    spec = DngSpec(exif={"Exif.Photo.ISOSpeedRatings": str(iso)}, pattern=pattern_letters() if layout == "xtrans" else "RGGB")
    rng = np.random.default_rng(0)
    if layout == "linear":
        return write_linear_dng(path, dark_linear_exposure(bench_scene(megapixels), spec, ratio, a, b, rng), spec)
    return write_cfa_dng(path, dark_exposure(bench_scene(megapixels), spec, ratio, a, b, rng), spec)


def _device_label(dev) -> str:
    import torch

    return f"cuda: {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else dev.type


def _time_best(run, repeats: int, sync) -> float:
    """Best wall time of ``repeats`` calls of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def network_alone(
    weights: Path, source: Path, dev, bf16: bool, whole_image: bool, repeats: int, megapixels: float, sync
) -> tuple[float, float]:
    """Seconds of the network alone and the PSNR (dB) of its output against the clean scene.

    ``whole_image``: one forward pass over the whole image already on ``dev`` (timed best of
    ``repeats`` after a warm-up), else the engine's tiled run (timed once).
    """
    import torch

    from lowlight_raw.model import load_model
    from lowlight_raw.network_input import network_input
    from lowlight_raw.noise import estimate_profile
    from lowlight_raw.raw import read_raw
    from lowlight_raw.tiling import run_tiled

    photo = read_raw(source)
    packed = photo.layout.pack(photo.visible)
    inputs = network_input(packed, RATIO, estimate_profile(packed, layout=photo.layout))
    model, _ = load_model(weights, dev)
    _, h, w = inputs.shape
    if whole_image:
        m = model.config.multiple
        padded = np.pad(inputs, ((0, 0), (0, -h % m), (0, -w % m)), mode="symmetric")
        x = torch.from_numpy(padded)[None].to(dev, memory_format=torch.channels_last)
        result = {}

        def run() -> None:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                result["out"] = model(x)

        seconds = _time_best(run, repeats, sync)
        s = model.scale
        output = result.pop("out")[0, :, : s * h, : s * w].float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    else:  # as the engine runs it; one warm-up tile (a whole extra run would double a slow bench)
        run_tiled(model, inputs[:, :512, :512], dev)
        start = time.perf_counter()
        output = np.clip(run_tiled(model, inputs, dev), 0.0, 1.0)
        seconds = time.perf_counter() - start
    output = photo.layout.crop_to_visible(output)
    mse = float(np.mean((output - bench_scene(megapixels)) ** 2, dtype=np.float64))
    return seconds, -10.0 * np.log10(max(mse, 1e-12))


def _end_to_end(weights: Path, source: Path, device: str, bf16: bool, repeats: int, sync) -> float:
    from lowlight_raw.engine import EnhanceOptions, Enhancer

    enhancer = Enhancer(weights, device=device, bf16=bf16)
    with tempfile.TemporaryDirectory() as out:
        options = EnhanceOptions(output_dir=Path(out), overwrite=True)
        return _time_best(lambda: enhancer.enhance(source, options), repeats, sync)


def _daemon_per_file(weights: Path, source: Path, device: str, files: int) -> float:
    """Seconds per file of one ``lr-bridge`` job of ``files`` copies of ``source`` (after a warm-up job)."""
    from lr_bridge.client import BridgeClient, JobOptions, connect, run_job, start_daemon
    from lr_bridge.state import read_state

    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as scratch:
        root = Path(scratch)
        sources = []
        for number in range(files):
            sources.append(root / f"{source.stem}_{number:02d}.dng")
            os.link(source, sources[-1])
        os.environ.update(LR_BRIDGE_MODEL=str(weights), LR_BRIDGE_DEVICE=device)
        daemon = start_daemon(root / "state")
        try:
            while read_state(root / "state") is None and daemon.poll() is None:
                time.sleep(0.05)
            with BridgeClient(connect(root / "state", autostart=False, timeout_s=300)) as client:
                options = JobOptions(output_dir=root / "out", overwrite=True)
                run_job(client, [str(sources[0])], options, emit=lambda event: None)  # warm-up
                start = time.perf_counter()
                summary = run_job(client, [str(s) for s in sources], options, emit=lambda event: None)
                seconds = (time.perf_counter() - start) / files
            if summary.ok != files:
                raise RuntimeError(f"daemon finished {summary.ok} of {files} files")
            return seconds
        finally:
            daemon.terminate()
            daemon.wait(30)


def measure(kind: str, weights: Path, source: Path, device: str, repeats: int, megapixels: float, files: int) -> list[dict]:
    """Run in the child: the rows of one ``kind`` ('e2e', 'network', 'daemon') for one model."""
    import torch

    from lowlight_raw.model import read_card
    from lowlight_raw.tiling import choose_device

    dev = choose_device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    base = {"kind": kind, "model": read_card(weights).name, "device": _device_label(dev)}
    if kind == "daemon":
        return [{**base, "precision": "bf16" if cuda else "fp32", "seconds": _daemon_per_file(weights, source, device, files)}]
    rows = []
    for bf16 in (False, True) if cuda else (False,):
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        row = {**base, "precision": "bf16" if bf16 else "fp32"}
        if kind == "e2e":
            row["seconds"] = _end_to_end(weights, source, device, bf16, repeats, sync)
        else:
            row["seconds"], row["psnr_db"] = network_alone(weights, source, dev, bf16, cuda, repeats, megapixels, sync)
        if cuda:
            row["peak_gpu_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
        rows.append(row)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return [{**row, "peak_rss_gb": peak_rss} for row in rows]


def resolve(models: str, widths: str, folder: Path, layout: str = "bayer") -> tuple[list[Path], list[str]]:
    """Weight files for ``--models`` (shipped names or paths) and untrained ``--widths`` for sensor
    ``layout``, and a line for each shipped model that is missing."""
    import torch

    from lowlight_raw.model import SIDUNet, UNetConfig, save_weights
    from lowlight_raw.registry import SHIPPED_MODELS

    found, missing = [], []
    for name in filter(None, (m.strip() for m in models.split(","))):
        path = SHIPPED_MODELS[name].get(layout) if name in SHIPPED_MODELS else Path(name)
        if path is not None and path.is_file():
            found.append(path)
        else:
            missing.append(f"{name}: n/a ({path or f'no {layout} network'} not found)")
    for width in filter(None, (w.strip() for w in widths.split(","))):
        torch.manual_seed(0)
        path = folder / f"untrained-width{width}.pt"
        save_weights(SIDUNet(UNetConfig.for_layout(layout, width=int(width), depth=5)), path, name=f"untrained-width{width}")
        found.append(path)
    return found, missing


def _cell(row: dict, key: str, fmt: str, cuda: bool) -> str:
    if key in row:
        return format(row[key], fmt)
    return "" if cuda or key != "peak_gpu_gb" else NO_CUDA


def print_table(rows: list[dict], device: str, megapixels: float, layout: str = "bayer", exposure: str = "dark") -> None:
    """The table, bf16-vs-float32 lines on CUDA (and the targets), "n/a (no CUDA)" rows elsewhere."""
    cuda = device.startswith("cuda")
    names = {"e2e": "end-to-end", "network": "network", "daemon": "daemon per file"}
    ratio, _, _, iso = EXPOSURES[exposure]
    print(f"\n{megapixels:g} MP synthetic {layout} RAW (×{ratio:g} {'dark' if ratio > 1 else 'well exposed'}, ISO {iso} noise)")
    print("| measure | model | precision | device | seconds | peak RSS GB | peak GPU GB | PSNR dB |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [names[row["kind"]], row["model"], row["precision"], row["device"], f"{row['seconds']:.3f}",
                 _cell(row, "peak_rss_gb", ".2f", cuda), _cell(row, "peak_gpu_gb", ".2f", cuda), _cell(row, "psnr_db", ".3f", cuda)]
        print("| " + " | ".join(cells) + " |")
        if not cuda and row["kind"] != "daemon":
            print(f"| {names[row['kind']]} | {row['model']} | bf16 | {NO_CUDA} | {NO_CUDA} | | {NO_CUDA} | {NO_CUDA} |")
    if not cuda:
        return
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {(r["kind"], r["precision"]): r for r in rows if r["model"] == model}
        if ("network", "fp32") in by and ("network", "bf16") in by:
            loss = by["network", "fp32"]["psnr_db"] - by["network", "bf16"]["psnr_db"]
            e2e, net = by.get(("e2e", "bf16"), {}).get("seconds", float("nan")), by["network", "bf16"]["seconds"]
            verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
            print(f"{model} on {by['network', 'bf16']['device']}: bf16 loses {loss:+.3f} dB against float32 "
                  f"(target ≤ {TARGETS['bf16_psnr_loss_db']}: {verdict(loss <= TARGETS['bf16_psnr_loss_db'])}); "
                  f"bf16 network {net * 1000:.1f} ms (target ≤ {TARGETS['network_s'] * 1000:.0f}: {verdict(net <= TARGETS['network_s'])}); "
                  f"bf16 end-to-end {e2e:.3f} s (target ≤ {TARGETS['e2e_s']}: {verdict(e2e <= TARGETS['e2e_s'])})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="fast,quality", help="shipped model names or weight files, comma list")
    from lowlight_raw.layouts import layout_kinds

    parser.add_argument("--layout", choices=layout_kinds(), default="bayer", help="sensor layout of the raw")
    parser.add_argument("--exposure", choices=tuple(EXPOSURES), default="dark",
                        help="a dark ×100 raw, or a clean one (end-to-end rows only: the network is the same)")
    parser.add_argument("--widths", default="", help="also time untrained SIDUNets of these widths (network alone)")
    parser.add_argument("--daemon-files", type=int, default=None,
                        help="files in the daemon's job, with the last model (default: 20 on CUDA, 0 = none elsewhere)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs after a warm-up (default: 3 on CUDA, 1)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WEIGHTS", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    repeats = args.repeats if args.repeats is not None else (3 if cuda else 1)
    files = args.daemon_files if args.daemon_files is not None else (20 if cuda else 0)
    if args.child:
        kind, weights, source = args.child
        rows = measure(kind, Path(weights), Path(source), args.device, repeats, args.megapixels, files)
        print(json.dumps(rows))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        source = synthesise_raw(Path(tmp) / "bench.dng", args.megapixels, args.layout, args.exposure)
        weights, missing = resolve(args.models, args.widths, Path(tmp), args.layout)
        runs = [("e2e", w) for w in weights if not w.stem.startswith("untrained")]
        runs += [("network", w) for w in weights] if args.exposure == "dark" else []
        runs += [("daemon", weights[-1])] if files and weights else []
        rows = []
        for kind, path in runs:
            cmd = [sys.executable, __file__, "--device", args.device, "--repeats", str(repeats), "--megapixels",
                   str(args.megapixels), "--daemon-files", str(files), "--child", kind, str(path), str(source)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            rows += json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(rows[-1]), flush=True)  # progress, and what survives if the run is cut short
    print_table(rows, rows[0]["device"] if rows else args.device, args.megapixels, args.layout, args.exposure)
    for line in missing:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
