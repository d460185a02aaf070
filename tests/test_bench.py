"""The GPU code paths of bench/bench_engine.py, rehearsed on the CPU (the device run must not fail on a typo)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lowlight_raw.networks.catalog import SHIPPED_MODELS

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_engine.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_whole_image_network_in_bf16_and_float32_scores_the_scene(bench, tmp_path: Path) -> None:
    """The CUDA path (whole image on the device, autocast) on the CPU: both paths score the
    chart alike (26.5 dB; the plain bilinear demosaic 25.6), and bf16 is within the 0.05 dB target."""
    source = bench.synthesise_raw(tmp_path / "small.dng", 0.05)
    run = lambda bf16, whole: bench.network_alone(SHIPPED_MODELS["fast"]["bayer"], source, torch.device("cpu"), bf16, whole, 1, 0.05, lambda: None)  # noqa: E731
    seconds, fp32 = run(False, True)
    _, bf16 = run(True, True)
    _, tiled = run(False, False)
    assert seconds > 0 and fp32 > 26.0 and abs(fp32 - tiled) < 0.5
    assert abs(fp32 - bf16) < bench.TARGETS["bf16_psnr_loss_db"]


def test_cuda_table_compares_bf16_with_float32_against_the_targets(bench, capsys: pytest.CaptureFixture) -> None:
    card = "cuda: NVIDIA H200"
    rows = [
        {"kind": "e2e", "model": "q", "device": card, "precision": "fp32", "seconds": 0.9, "peak_gpu_gb": 3.0, "peak_rss_gb": 2.0},
        {"kind": "e2e", "model": "q", "device": card, "precision": "bf16", "seconds": 0.4, "peak_gpu_gb": 2.0, "peak_rss_gb": 2.0},
        {"kind": "network", "model": "q", "device": card, "precision": "fp32", "seconds": 0.08, "psnr_db": 30.0, "peak_gpu_gb": 4.0},
        {"kind": "network", "model": "q", "device": card, "precision": "bf16", "seconds": 0.04, "psnr_db": 29.97, "peak_gpu_gb": 2.0},
        {"kind": "daemon", "model": "q", "device": card, "precision": "bf16", "seconds": 0.45},
    ]
    bench.print_table(rows, card, 24.0)
    printed = capsys.readouterr().out
    assert "| network | q | bf16 | cuda: NVIDIA H200 | 0.040 |  | 2.00 | 29.970 |" in printed
    assert "| daemon per file | q | bf16 | cuda: NVIDIA H200 | 0.450 |" in printed
    assert "q on cuda: NVIDIA H200: bf16 loses +0.030 dB against float32 (target ≤ 0.05: met)" in printed
    assert "bf16 network 40.0 ms (target ≤ 50: met); bf16 end-to-end 0.400 s (target ≤ 0.5: met)" in printed
    assert "n/a (no CUDA)" not in printed


def test_cpu_table_reports_speedup_efficiency_and_the_targets(bench, capsys: pytest.CaptureFixture) -> None:
    def row(layout, megapixels, code, seconds, network_s, peak):
        return {"layout": layout, "megapixels": megapixels, "code": code, "seconds": seconds, "all_seconds": [seconds + 1.0, seconds],
                "network_s": network_s, "network_gflop": 400.0, "precision": "bf16" if code == "this tree" else "fp32",
                "peak_rss_gb": peak, "threads": 1, "conv_gflops": {"fp32": 100.0, "bf16": 1000.0}}

    rows = [row("bayer", 24.0, "this tree", 4.0, 2.0, 1.3), row("bayer", 24.0, "HEAD", 12.0, 8.0, 1.7),
            row("linear", 24.0, "this tree", 7.0, 2.5, 1.6), row("linear", 100.0, "this tree", 30.0, 10.0, 4.0)]
    bench.print_cpu_table(rows)
    printed = capsys.readouterr().out
    assert "| bayer | 24 | this tree | 4.00 (5.0, 4.0) | 2.00 | 400 | 200 | 20% of 1000 | bf16, 1 thr | 1.30 | 3.00× |" in printed
    assert "| bayer | 24 | HEAD | 12.00 (13.0, 12.0) | 8.00 | 400 | 50 | 50% of 100 | fp32, 1 thr | 1.70 |  |" in printed
    assert "24 MP Bayer: 4.00 s, 3.00× the baseline (target ≤ 4 s or ≥ 2.5×: met)" in printed
    assert "24 MP linear: 1.75× Bayer's time (target ≤ 1.5×: NOT met)" in printed
    assert "linear 24 MP peak RSS 1.60 GB (target ≤ 1.5: NOT met)" in printed
    assert "linear 100 MP peak RSS 4.00 GB (target ≤ 2: NOT met)" in printed
    assert "bayer 24 MP network at 20% of the bf16 conv throughput (target ≥ 70%: NOT met)" in printed


def test_sweep_summary_merges_tables_and_compares_the_model_with_the_best_classical(tmp_path: Path) -> None:
    """bench/sweep_summary.py: a later table's methods replace an earlier one's (the model rescored
    alone), the best classical method is the one of highest PSNR, and the gap is model minus it."""
    spec = importlib.util.spec_from_file_location("sweep_summary", BENCH.with_name("sweep_summary.py"))
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)

    def scores(psnr: float, shadow: float = 1.0) -> dict:
        return {"psnr": psnr, "ssim": 0.5, "shadow_dl": shadow, "shadow_dl_worst": shadow, "edge_chroma": 5.0}

    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"bayer": {"x10": {"naive": scores(25.0), "nlm": scores(30.0), "darktable": scores(32.5),
                                                   "model": scores(29.0)}}}))
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({"bayer": {"x10": {"model": scores(31.0, -0.5)}}}))
    tables = summary.merged([slow, quick])
    assert tables["bayer"]["x10"]["model"]["psnr"] == 31.0 and tables["bayer"]["x10"]["nlm"]["psnr"] == 30.0
    printed = summary.summary(tables)
    assert "| bayer | best tuned classical | 32.50 / 0.500 (darktable) |" in printed
    assert "| | model − best classical, dB | **-1.50** |" in printed
    assert "| | shadow ΔL\\*, model (best classical) | -0.5 (+1.0) |" in printed
