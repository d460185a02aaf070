"""Speed, peak memory and network efficiency of the engine on synthetic RAWs; prints a table.

    .venv/bin/python bench/bench_engine.py --baseline HEAD            # CPU table: 6–100 MP, every layout, vs git HEAD
    .venv/bin/python bench/bench_engine.py --sizes 24 --layouts bayer --baseline HEAD --repeats 3   # the short one
    .venv/bin/python bench/bench_engine.py --device cuda   # on a GPU (scripts/gpu_bench.sh): the per-model rows
    .venv/bin/python bench/bench_engine.py --per-model --megapixels 2 --models fast --widths 32
    .venv/bin/python bench/bench_engine.py --per-model --layout xtrans --models fast   # a Fujifilm-like raw
    .venv/bin/python bench/bench_engine.py --per-model --exposure clean --models fast  # a clean raw: network + demosaic blend

**The CPU table** (the default on the CPU): for each ``--layouts`` and ``--sizes`` (megapixels), the
fast model end to end (``Enhancer.enhance``: decode → network → DNG) in a fresh process per run,
after a warm-up file: seconds, peak RSS, the network's own seconds (hooks on its forward pass),
its GFLOP as tiled (torch's FLOP counter × the pixels of every tile) and GFLOP/s, next to the
convolution throughput the same process then measures (a large 3×3 convolution in the precision
the network ran in, with the same threads; the parent prints it for all cores first). ``--baseline REV`` runs a git revision's code too (a temporary ``git worktree``, removed
afterwards), run for run interleaved with this tree's, so both meet the same load on a shared
machine. Both get the environment the bench was started with: each code sets its own threads
(this tree: OpenMP's brief spinning, ``GOMP_SPINCOUNT``, and as many threads as there are idle
cores); export ``GOMP_SPINCOUNT=1000`` first to give a baseline from before it that too. Then each step's seconds,
the least of the runs (the engine's decode and write, and restore's steps: :data:`RESTORE_STEPS`), which
compare where whole runs do not on a busy machine, and a line per target of issue 29.

**The per-model rows** (``--per-model``; always on CUDA), each model in fresh subprocesses so that
a row's peak RSS is its own:

* **end-to-end**: ``Enhancer.enhance`` (decode → network → colour → write DNG);
* **network**: on the CPU the tiled network as the engine runs it; on CUDA one forward pass
  over the whole image already on the GPU. With the PSNR of its output against the clean scene
  (linear camera RGB), so bf16 can be compared with float32;
* **daemon**: per-file time of one ``lr-bridge`` job of ``--daemon-files`` copies of the raw
  (the daemon's default precision: bf16 on CUDA).

On CUDA every measure runs in float32 and in bf16 autocast (the engine's choice there), with
peak GPU memory (``torch.cuda.max_memory_allocated``); on the CPU those rows say
"n/a (no CUDA)". Every row names its device, the card's name on CUDA.
Targets: GPU, quality model, bf16: end-to-end ≤ 0.5 s, network ≤ 50 ms, PSNR within 0.05 dB of
float32; the CPU table's: :data:`CPU_TARGETS`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

LAUNCH_ENV = dict(os.environ)  # before lowlight_raw is imported (it sets GOMP_SPINCOUNT): what the children get
RATIO = 100.0  # the synthetic raw is exposed 100× too dark; the network-alone rows amplify it back
# --exposure: how the raw is shot (ratio too dark, noise a and b, ISO). A clean one gets the
# network blended with the layout's clean rendering (restore.py), so only its end-to-end row differs.
# "dark" reads σ ≈ 0.032 at mid-grey after the engine's auto exposure (×44; its noise estimate holds
# `a` to what cameras have at ISO 6400), so it too gets the (denoised) clean rendering blended in;
# "very-dark" (×300, tagged ISO 25600: σ ≈ 0.12) gets the network alone, the path of a ×100 … ×300 photo.
EXPOSURES = {"dark": (RATIO, 2e-4, 2e-7, 6400), "very-dark": (3 * RATIO, 2e-4, 2e-7, 25600), "clean": (1.0, 6e-6, 2e-9, 200)}
NO_CUDA = "n/a (no CUDA)"
TARGETS = {"e2e_s": 0.5, "network_s": 0.05, "bf16_psnr_loss_db": 0.05}  # GPU, quality model, bf16


def bench_scene(megapixels: float) -> np.ndarray:
    """The clean linear camera-RGB scene ``(H, W, 3)`` of ``megapixels`` (3:2): the chart tiled."""
    from lowlight_raw.testing.synthetic import test_scene

    width = int(round(np.sqrt(megapixels * 1e6 * 1.5) / 2)) * 2
    height = int(round(width / 1.5 / 2)) * 2
    return np.tile(test_scene(500, 750), (height // 500 + 1, width // 750 + 1, 1))[:height, :width]


def synthesise_raw(path: Path, megapixels: float, layout: str = "bayer", exposure: str = "dark") -> Path:
    """A DNG of :func:`bench_scene` of sensor ``layout`` shot as ``exposure`` says (:data:`EXPOSURES`)."""
    from lowlight_raw.layouts.xtrans import pattern_letters
    from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, dark_linear_exposure, write_cfa_dng, write_linear_dng

    ratio, a, b, iso = EXPOSURES[exposure]
    spec = DngSpec(exif={"Exif.Photo.ISOSpeedRatings": str(iso)}, pattern=pattern_letters() if layout == "xtrans" else "RGGB")
    rng = np.random.default_rng(0)
    if layout == "linear":
        return write_linear_dng(path, dark_linear_exposure(bench_scene(megapixels), spec, ratio, a, b, rng), spec)
    return write_cfa_dng(path, dark_exposure(bench_scene(megapixels), spec, ratio, a, b, rng), spec)


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB: ``VmHWM`` (Linux), else ``ru_maxrss``, which on
    Linux would also count the memory the parent had when it started the child (a parent that
    synthesised a 100 MP raw made every later child look 16 GB large)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024**2
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


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

    from lowlight_raw.files.raw import read_raw
    from lowlight_raw.networks.weights import load_model
    from lowlight_raw.pipeline.network_input import network_input
    from lowlight_raw.pipeline.noise import estimate_profile
    from lowlight_raw.pipeline.tiling import run_tiled

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

    from lowlight_raw.networks.weights import read_card
    from lowlight_raw.pipeline.device import choose_device

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
    peak_rss = peak_rss_gb()
    return [{**row, "peak_rss_gb": peak_rss} for row in rows]


def resolve(models: str, widths: str, folder: Path, layout: str = "bayer") -> tuple[list[Path], list[str]]:
    """Weight files for ``--models`` (shipped names or paths) and untrained ``--widths`` for sensor
    ``layout``, and a line for each shipped model that is missing."""
    import torch

    from lowlight_raw.networks.catalog import SHIPPED_MODELS
    from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
    from lowlight_raw.networks.weights import save_weights

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


# -- the CPU table: every layout and size, this tree's code against a git revision's, interleaved --

CPU_SIZES = "6,24,50,100"  # megapixels of the CPU table (--sizes)
CPU_TARGETS = {"bayer_24mp_s": 4.0, "speedup": 2.5, "layout_vs_bayer": 1.5, "peak_24mp_gb": 1.5, "peak_100mp_gb": 2.0,
               "conv_share": 0.70}  # issue 29, on the project's 2-core CPU


def conv_throughput(repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of a large 3×3 convolution (64 → 64 channels, 256², channels-last) on this CPU with
    torch's threads, float32 and bf16: what the machine's convolutions can reach, best of ``repeats``."""
    import torch

    channels, side = 64, 256
    flops = 2 * channels * channels * 9 * side * side
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.rand(1, channels, side, side, dtype=dtype).to(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dtype).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            rates[name] = flops / _time_best(lambda conv=conv, x=x: conv(x), repeats, lambda: None) / 1e9
    return rates


# restore's steps the CPU table times (those the code under test has), by the functions restore calls for them
RESTORE_STEPS = {"tiled network": ("run_tiled",), "classical blend": ("blend_clean_rendering",),
                 "chroma + dark levels + false colour": ("smooth_chroma", "dark_level_curve", "calibrate_dark_levels",
                                                         "scale_dark_levels", "suppress_false_colour")}


def time_restore_steps() -> dict[str, float]:
    """Run in the child: timers around the functions ``lowlight_raw``'s restore calls for each of
    :data:`RESTORE_STEPS`, their seconds summed per step into the returned dict as the engine runs."""
    restore = importlib.import_module("lowlight_raw.pipeline.restore" if importlib.util.find_spec("lowlight_raw.pipeline")
                                      else "lowlight_raw.restore")
    totals: dict[str, float] = {}
    for step, names in RESTORE_STEPS.items():
        for name in names:
            function = getattr(restore, name, None)
            if function is None:
                continue

            def timed(*args, _function=function, _step=step, **kwargs):
                start = time.perf_counter()
                try:
                    return _function(*args, **kwargs)
                finally:
                    totals[_step] = totals.get(_step, 0.0) + time.perf_counter() - start

            setattr(restore, name, timed)
    return totals


def cpu_measure(root: Path, weights: Path, source: Path, warm_up: Path) -> dict:
    """Run in the child, with the code of ``root`` (this tree or a baseline's worktree): one
    :class:`Enhancer` of ``weights``; ``warm_up`` enhanced first (loads and JIT-compiles), then
    ``source`` timed once. The network's own time and pixels come from hooks on its forward pass,
    its FLOPs per input pixel from torch's FLOP counter (convolutions)."""
    sys.path.insert(0, str(root))
    import lowlight_raw

    if not Path(lowlight_raw.__file__).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"imported {lowlight_raw.__file__}, not the code under {root}")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lowlight_raw.engine import EnhanceOptions, Enhancer

    # revisions before the house had rooms (0.2.0) kept these at the top level and called the network ``model``
    device = importlib.import_module("lowlight_raw.pipeline.device" if (root / "lowlight_raw" / "pipeline").is_dir()
                                     else "lowlight_raw.tiling")
    enhancer = Enhancer(weights, device="cpu")
    network = enhancer.network if hasattr(enhancer, "network") else enhancer.model
    probe = torch.zeros(1, 2 * network.layout.channels, 128, 128)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(probe)
    flops_per_pixel = counter.get_total_flops() / (128 * 128)
    timing = {"seconds": 0.0, "pixels": 0}

    def before(module, args) -> None:
        timing["start"] = time.perf_counter()

    def after(module, args, output) -> None:
        timing["seconds"] += time.perf_counter() - timing["start"]
        timing["pixels"] += args[0].shape[-2] * args[0].shape[-1]

    network.register_forward_pre_hook(before)
    network.register_forward_hook(after)
    steps = time_restore_steps()
    with tempfile.TemporaryDirectory() as out:
        options = EnhanceOptions(output_dir=Path(out), overwrite=True)
        enhancer.enhance(warm_up, options)
        timing.update(seconds=0.0, pixels=0)
        steps.clear()
        start = time.perf_counter()
        result = enhancer.enhance(source, options)
        seconds = time.perf_counter() - start
    use_bf16 = getattr(device, "use_bf16", None)  # older code: bf16 on CUDA only
    return {"conv_gflops": conv_throughput(), "seconds": seconds, "stages": result.seconds, "steps": steps, "network_s": timing["seconds"],
            "network_gflop": flops_per_pixel * timing["pixels"] / 1e9,
            "precision": "bf16" if use_bf16 is not None and use_bf16(torch.device("cpu")) else "fp32",
            "threads": torch.get_num_threads(), "peak_rss_gb": peak_rss_gb()}


@contextmanager
def baseline_tree(revision: str):
    """A detached ``git worktree`` of ``revision`` in a temporary folder (removed afterwards), or
    ``None`` when ``revision`` is empty."""
    if not revision:
        yield None
        return
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=True)


def cpu_table(args: argparse.Namespace) -> int:
    """For each layout and size: this tree's code (and ``--baseline``'s, interleaved run by run, so
    both meet the same load) end to end in a fresh process each; prints the table and the targets."""
    from lowlight_raw.networks.catalog import SHIPPED_MODELS

    sizes = [float(s) for s in args.sizes.split(",")]
    layouts = args.layouts.split(",")
    peak = conv_throughput()
    print(f"conv throughput of this CPU ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}): "
          f"{peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} GFLOP/s bf16", flush=True)
    rows = []
    with baseline_tree(args.baseline) as baseline, tempfile.TemporaryDirectory() as tmp:
        raws = Path(args.keep_raws or tmp)
        raws.mkdir(parents=True, exist_ok=True)
        codes = [("this tree", Path(__file__).resolve().parents[1])] + ([(args.baseline, baseline)] if baseline else [])
        for layout in layouts:
            weights = SHIPPED_MODELS["fast"][layout]
            warm_up = raws / f"{layout}-1mp-{args.exposure}.dng"
            if not warm_up.exists():
                synthesise_raw(warm_up, 1.0, layout, args.exposure)
            for megapixels in sizes:
                source = raws / f"{layout}-{megapixels:g}mp-{args.exposure}.dng"
                if not source.exists():
                    synthesise_raw(source, megapixels, layout, args.exposure)
                here = codes if megapixels <= args.baseline_max_mp else codes[:1]
                runs: dict[str, list[dict]] = {name: [] for name, _ in here}
                for _ in range(args.repeats):
                    for name, root in here:
                        cmd = [sys.executable, __file__, "--cpu-child", str(root), str(weights), str(source), str(warm_up)]
                        done = subprocess.run(cmd, capture_output=True, text=True, env=LAUNCH_ENV)
                        if done.returncode != 0:
                            print(done.stderr, file=sys.stderr)
                            return 1
                        runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                for name, _ in here:
                    best = min(runs[name], key=lambda r: r["seconds"])
                    timed = [{**r["stages"], **r["steps"]} for r in runs[name]]
                    rows.append({**best, "layout": layout, "megapixels": megapixels, "code": name,
                                 "all_seconds": [r["seconds"] for r in runs[name]],
                                 "least_steps": {step: min(t.get(step, 0.0) for t in timed) for step in timed[0]},
                                 "peak_rss_gb": max(r["peak_rss_gb"] for r in runs[name])})
                    print(json.dumps(rows[-1]), flush=True)
    print_cpu_table(rows, args.exposure)
    return 0


def print_cpu_table(rows: list[dict], exposure: str = "dark") -> None:
    """The CPU table (best of the interleaved runs; peak RSS the largest) and a line per target. A
    row's network throughput is set against the conv throughput its own process measured right
    after it (same threads, same moment's load), in the precision it ran."""
    print(f"\nCPU, ×{EXPOSURES[exposure][0]:g} {exposure} synthetic raws, fast model, end to end (decode → network → DNG), "
          "best of the interleaved runs")
    print("| layout | MP | code | seconds (runs) | network s | network GFLOP | GFLOP/s | of conv GFLOP/s | precision, threads | peak RSS GB | speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    baselines = {(r["layout"], r["megapixels"]): r for r in rows if r["code"] != "this tree"}
    for row in rows:
        key = (row["layout"], row["megapixels"])
        rate = row["network_gflop"] / row["network_s"]
        speedup = f"{baselines[key]['seconds'] / row['seconds']:.2f}×" if key in baselines and row["code"] == "this tree" else ""
        runs = ", ".join(f"{s:.1f}" for s in row["all_seconds"])
        cells = [row["layout"], f"{row['megapixels']:g}", row["code"], f"{row['seconds']:.2f} ({runs})", f"{row['network_s']:.2f}",
                 f"{row['network_gflop']:.0f}", f"{rate:.0f}", f"{rate / row['conv_gflops'][row['precision']]:.0%} of {row['conv_gflops'][row['precision']]:.0f}",
                 f"{row['precision']}, {row['threads']} thr",
                 f"{row['peak_rss_gb']:.2f}", speedup]
        print("| " + " | ".join(cells) + " |")
    print("(speedup: the baseline's seconds over this tree's, on the same machine in the same run)")
    print_steps_table(rows)
    mine = {(r["layout"], r["megapixels"]): r for r in rows if r["code"] == "this tree"}
    theirs = baselines
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    bayer = mine.get(("bayer", 24.0))
    if bayer is not None:
        speedup = theirs[("bayer", 24.0)]["seconds"] / bayer["seconds"] if ("bayer", 24.0) in theirs else float("nan")
        ok = bayer["seconds"] <= CPU_TARGETS["bayer_24mp_s"] or speedup >= CPU_TARGETS["speedup"]
        print(f"24 MP Bayer: {bayer['seconds']:.2f} s, {speedup:.2f}× the baseline (target ≤ {CPU_TARGETS['bayer_24mp_s']:g} s "
              f"or ≥ {CPU_TARGETS['speedup']:g}×: {verdict(ok)})")
        for layout in ("xtrans", "linear"):
            if (layout, 24.0) in mine:
                ratio = mine[layout, 24.0]["seconds"] / bayer["seconds"]
                print(f"24 MP {layout}: {ratio:.2f}× Bayer's time (target ≤ {CPU_TARGETS['layout_vs_bayer']:g}×: "
                      f"{verdict(ratio <= CPU_TARGETS['layout_vs_bayer'])})")
    for (layout, megapixels), row in mine.items():
        limit = CPU_TARGETS["peak_24mp_gb"] if megapixels <= 24 else CPU_TARGETS["peak_100mp_gb"] if megapixels >= 100 else None
        if limit is not None:
            print(f"{layout} {megapixels:g} MP peak RSS {row['peak_rss_gb']:.2f} GB (target ≤ {limit:g}: "
                  f"{verdict(row['peak_rss_gb'] <= limit)})")
    for (layout, megapixels), row in mine.items():
        share = row["network_gflop"] / row["network_s"] / row["conv_gflops"][row["precision"]]
        print(f"{layout} {megapixels:g} MP network at {share:.0%} of the {row['precision']} conv throughput "
              f"(target ≥ {CPU_TARGETS['conv_share']:.0%}: {verdict(share >= CPU_TARGETS['conv_share'])})")


def print_steps_table(rows: list[dict]) -> None:
    """Each step's seconds, the least of a row's runs (a step's least is the surest on a busy machine,
    whose load comes and goes within a run): the engine's stages and :data:`RESTORE_STEPS`."""
    columns = ["decode", *RESTORE_STEPS, "write", "total"]
    print("\nSteps, each the least of the runs (s)")
    print("| layout | MP | code | " + " | ".join(columns) + " |")
    print("|---" * (3 + len(columns)) + "|")
    for row in rows:
        least = row.get("least_steps", {})
        cells = [f"{least[c]:.2f}" if c in least else "" for c in columns]
        print(f"| {row['layout']} | {row['megapixels']:g} | {row['code']} | " + " | ".join(cells) + " |")


def main() -> int:
    if sys.argv[1:2] == ["--cpu-child"]:  # before anything imports lowlight_raw: the child picks whose code
        root, weights, source, warm_up = map(Path, sys.argv[2:6])
        print(json.dumps(cpu_measure(root, weights, source, warm_up)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="fast,quality", help="shipped model names or weight files, comma list")
    from lowlight_raw.layouts.registry import layout_kinds

    parser.add_argument("--layout", choices=layout_kinds(), default="bayer", help="sensor layout of the raw")
    parser.add_argument("--exposure", choices=tuple(EXPOSURES), default="dark",
                        help="a dark ×100 raw, or a clean one (end-to-end rows only: the network is the same)")
    parser.add_argument("--widths", default="", help="also time untrained SIDUNets of these widths (network alone)")
    parser.add_argument("--daemon-files", type=int, default=None,
                        help="files in the daemon's job, with the last model (default: 20 on CUDA, 0 = none elsewhere)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs after a warm-up (default: 3 on CUDA, 1)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WEIGHTS", "SOURCE"), help=argparse.SUPPRESS)
    parser.add_argument("--per-model", action="store_true", help="on the CPU: the per-model rows instead of the CPU table")
    parser.add_argument("--sizes", default=CPU_SIZES, help="CPU table: megapixels, comma list")
    parser.add_argument("--layouts", default=",".join(layout_kinds()), help="CPU table: sensor layouts, comma list")
    parser.add_argument("--baseline", default="", help="CPU table: also run this git revision's code (e.g. HEAD), interleaved")
    parser.add_argument("--baseline-max-mp", type=float, default=24.0,
                        help="CPU table: run the baseline up to this size only (today's code needed 4 GB for a 24 MP linear raw)")
    parser.add_argument("--keep-raws", default="", help="CPU table: keep the synthetic raws in this folder (and reuse them)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if not cuda and not args.per_model and not args.child:
        if args.repeats is None:
            args.repeats = 1
        return cpu_table(args)
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
        runs += [("network", w) for w in weights] if args.exposure != "clean" else []
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
