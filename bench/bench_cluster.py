"""Benchmark of the Dask backend: throughput (files/min) and overhead per file of a batch through
the in-process engine, the plain lr-bridge daemon, and a LocalCluster of 1 and 2 worker processes.

    python bench/bench_cluster.py [--weights PATH] [--files 24] [--size 512x768]

Without ``--weights`` it uses a tiny untrained model, so the numbers measure the plumbing, not the
network. Every setup is warm before it is timed (engines loaded, one file done); each timed run
is one batch of all files written to a fresh folder. "overhead per file" is the worker time a
file costs beyond the engine's own work: wall time × workers / files − the engine's mean time
(for the cluster, measured on the workers). Every process runs torch on one thread, as Dask's
workers do (``OMP_NUM_THREADS=1``), so the rows compare the plumbing, not thread counts. Transfer per file: the raw sent plus the output
returned (what travels to and from a remote GPU worker).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lowlight_raw.backends.base import LocalBackend
from lowlight_raw.backends.dask_client import connect
from lowlight_raw.backends.spec import ClusterSpec
from lowlight_raw.engine import EnhanceOptions, Enhancer
from lr_bridge.client import BridgeClient, JobSummary, run_job, start_daemon
from lr_bridge.client import connect as connect_daemon
from lr_bridge.state import read_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bridge import make_sources, tiny_weights  # noqa: E402  (one way to make the test DNGs and model)


def run_backend(backend, sources: list[Path], out: Path) -> tuple[float, list[float]]:
    """Wall seconds for one batch and each file's engine seconds; every file must succeed."""
    list(backend.enhance(sources[:1], EnhanceOptions(output_dir=out / "warm-up")))
    start = time.perf_counter()
    outcomes = list(backend.enhance(sources, EnhanceOptions(output_dir=out / "timed")))
    wall = time.perf_counter() - start
    failures = [outcome for _, outcome in outcomes if isinstance(outcome, Exception)]
    assert not failures and len(outcomes) == len(sources), failures
    return wall, [outcome.seconds["total"] for _, outcome in outcomes]


def run_daemon(weights: Path, sources: list[Path], root: Path) -> float:
    """Wall seconds for one job of all files through a real ``lr-bridge serve`` on loopback."""
    os.environ["LR_BRIDGE_MODEL"] = str(weights.absolute())
    state_dir = root / "state"
    daemon = start_daemon(state_dir)
    try:
        while read_state(state_dir) is None and daemon.poll() is None:
            time.sleep(0.02)
        with BridgeClient(connect_daemon(state_dir, autostart=False, timeout_s=120)) as client:
            quiet = lambda files, out: run_job(client, [str(f) for f in files], EnhanceOptions(output_dir=out),  # noqa: E731
                                               emit=lambda event: None)
            quiet(sources[:1], root / "daemon-warm-up")
            start = time.perf_counter()
            summary: JobSummary = quiet(sources, root / "daemon")
            wall = time.perf_counter() - start
            assert summary.ok == len(sources), summary
            return wall
    finally:
        daemon.terminate()
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="model weights (default: a tiny untrained model)")
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--size", default="512x768", help="HEIGHTxWIDTH of the test DNGs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # the daemon started below, like a Dask worker
    height, width = (int(v) for v in args.size.split("x"))

    rows: list[tuple[str, int, float, float]] = []  # setup, workers, wall seconds, engine seconds per file
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        root = Path(scratch)
        weights = args.weights or tiny_weights(root)
        (root / "src").mkdir()
        sources = make_sources(root / "src", args.files, height, width)

        wall, engine = run_backend(LocalBackend(Enhancer(weights, device="cpu")), sources, root / "local")
        base = statistics.fmean(engine)
        rows.append(("in-process engine", 1, wall, base))
        rows.append(("plain lr-bridge daemon", 1, run_daemon(weights, sources, root), base))
        for workers in (1, 2):
            backend = connect(ClusterSpec(local_workers=workers), str(weights), "cpu")
            try:
                wall, engine = run_backend(backend, sources, root / f"cluster{workers}")
            finally:
                backend.close()
            rows.append((f"LocalCluster, {workers} worker process{'es' if workers > 1 else ''}", workers, wall,
                         statistics.fmean(engine)))
        raw_kb = sources[0].stat().st_size / 1024
        output_kb = next((root / "local" / "timed").iterdir()).stat().st_size / 1024

    print(f"cluster benchmark: {args.files} DNGs of {height}x{width}, model {weights.name}, {os.cpu_count()} CPUs, "
          "torch on 1 thread per process")
    print(f"transfer per file: {raw_kb:.0f} KiB raw + {output_kb:.0f} KiB output")
    print("| setup | files/min | wall per file (ms) | engine per file (ms) | overhead per file (ms) |")
    print("|---|---:|---:|---:|---:|")
    for setup, workers, wall, engine in rows:
        per_file = wall / len(sources)
        overhead = per_file * workers - engine
        print(f"| {setup} | {60 / per_file:.0f} | {per_file * 1000:.1f} | {engine * 1000:.1f} | {overhead * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
