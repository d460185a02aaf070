"""Speed and peak memory of the engine on a synthetic 24 MP RAW; prints a table.

    .venv/bin/python bench/bench_engine.py                 # CPU, shipped model + widths 8/16/32
    .venv/bin/python bench/bench_engine.py --device cuda   # on a GPU
    .venv/bin/python bench/bench_engine.py --megapixels 6 --widths 16

Every measurement runs in a fresh subprocess so that its peak RSS is its own. "end-to-end" is
``Enhancer.enhance`` (decode → network → colour → write DNG); "network" is the tiled network
alone on the packed input. Targets (2-core CPU, shipped model, 24 MP): end-to-end ≤ 10 s and
≤ 3 GB peak RSS; on a GPU ≤ 0.5 s end-to-end and ≤ 50 ms network.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthesise_raw(path: Path, megapixels: float) -> Path:
    """A dark ×100, ISO-6400-noisy DNG of ``megapixels`` (3:2) with the chart scene tiled."""
    from lowlight_raw.synthetic import DngSpec, dark_exposure, test_scene, write_bayer_dng

    width = int(round(np.sqrt(megapixels * 1e6 * 1.5) / 2)) * 2
    height = int(round(width / 1.5 / 2)) * 2
    spec = DngSpec(exif={"Exif.Photo.ISOSpeedRatings": "6400"})
    scene = np.tile(test_scene(500, 750), (height // 500 + 1, width // 750 + 1, 1))[:height, :width]
    active = dark_exposure(scene, spec, 100.0, 2e-4, 2e-7, np.random.default_rng(0))
    return write_bayer_dng(path, active, spec)


def _measure(kind: str, source: str, device: str, width: int | None, weights: str | None, repeats: int) -> dict:
    """Run in the child: time ``kind`` ('e2e' or 'network') and return seconds (best of repeats)."""
    import torch

    from lowlight_raw.bayer import pack_bayer
    from lowlight_raw.engine import EnhanceOptions, Enhancer
    from lowlight_raw.model import SIDUNet, UNetConfig, for_inference
    from lowlight_raw.network_input import network_input
    from lowlight_raw.noise import estimate_profile
    from lowlight_raw.raw import read_raw
    from lowlight_raw.tiling import choose_device, run_tiled

    dev = choose_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    if kind == "e2e":
        enhancer = Enhancer(weights or "auto", device=device)
        with tempfile.TemporaryDirectory() as out:
            options = EnhanceOptions(output_dir=Path(out), overwrite=True)
            enhancer.enhance(Path(source), options)  # warm-up (CUDA kernels, page cache)
            for _ in range(repeats):
                t = time.perf_counter()
                enhancer.enhance(Path(source), options)
                times.append(time.perf_counter() - t)
        label = enhancer.card.name
    else:
        photo = read_raw(Path(source))
        packed = pack_bayer(photo.mosaic, photo.layout)
        inputs = network_input(packed, 100.0, estimate_profile(packed))
        model = for_inference(SIDUNet(UNetConfig(width=width)), dev)
        run_tiled(model, inputs[:, :512, :512], dev)
        for _ in range(repeats):
            sync()
            t = time.perf_counter()
            run_tiled(model, inputs, dev)
            sync()
            times.append(time.perf_counter() - t)
        label = f"width {width}"
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"kind": kind, "label": label, "seconds": min(times), "peak_gb": peak_gb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--widths", default="8,16,32", help="network-alone widths to time (comma list, '' for none)")
    parser.add_argument("--weights", help="weights for the end-to-end run (default: shipped)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "SOURCE", "WIDTH", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, width, weights = args.child
        print(json.dumps(_measure(kind, source, args.device, int(width) or None, weights or None, args.repeats)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        source = synthesise_raw(Path(tmp) / "bench24.dng", args.megapixels)
        runs = [("e2e", 0)] + [("network", int(w)) for w in args.widths.split(",") if w.strip()]
        rows = []
        for kind, width in runs:
            cmd = [sys.executable, __file__, "--device", args.device, "--repeats", str(args.repeats),
                   "--child", kind, str(source), str(width), args.weights or ""]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n{args.megapixels:g} MP synthetic RAW on {args.device}")
    print(f"| {'measure':<12} | {'model':<22} | {'seconds':>8} | {'peak RSS GB':>11} |")
    print(f"|{'-' * 14}|{'-' * 24}|{'-' * 10}|{'-' * 13}|")
    for row in rows:
        name = "end-to-end" if row["kind"] == "e2e" else "network"
        print(f"| {name:<12} | {row['label']:<22} | {row['seconds']:>8.2f} | {row['peak_gb']:>11.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
