"""Benchmark of the lr-bridge daemon: per-file overhead against the in-process engine, and
10 clients × 5 jobs at once (all must complete, none lost).

    python bench/bench_bridge.py [--weights PATH] [--files 20] [--size 256x384] [--clients 10] [--jobs 5]

Without ``--weights`` it uses a tiny untrained model, so that the numbers measure the bridge,
not the network. The daemon runs as a real ``lr-bridge serve`` process on a loopback port.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.networks.weights import save_weights
from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, test_scene, write_cfa_dng
from lr_bridge.client import BridgeClient, JobSummary, connect, run_job, start_daemon
from lr_bridge.state import read_state

OVERHEAD_TARGET_MS = 20.0


def make_sources(folder: Path, count: int, height: int, width: int) -> list[Path]:
    spec = DngSpec()
    mosaic = dark_exposure(test_scene(height, width), spec, 100.0, 2e-4, 2e-7, np.random.default_rng(0))
    first = write_cfa_dng(folder / "src_000.dng", mosaic, spec)
    sources = [first]
    for number in range(1, count):
        copy = folder / f"src_{number:03d}.dng"
        copy.write_bytes(first.read_bytes())
        sources.append(copy)
    return sources


def tiny_weights(folder: Path) -> Path:
    """A tiny untrained model in ``folder``, so that the numbers measure the plumbing, not the network."""
    torch.manual_seed(0)
    weights = folder / "tiny.pt"
    save_weights(SIDUNet(UNetConfig(width=4, depth=3)), weights, name="bench-tiny")
    return weights


def time_in_process(weights: Path, sources: list[Path], out: Path) -> list[float]:
    enhancer = Enhancer(weights, device="cpu")
    options = EnhanceOptions(output_dir=out, overwrite=True)
    enhancer.enhance(sources[0], options)  # warm-up
    times = []
    for source in sources:
        start = time.perf_counter()
        enhancer.enhance(source, options)
        times.append(time.perf_counter() - start)
    return times


def run_quietly(client: BridgeClient, files: list[Path], options: EnhanceOptions) -> JobSummary:
    return run_job(client, [str(f) for f in files], options, emit=lambda event: None)


def time_through_daemon(client: BridgeClient, sources: list[Path], out: Path) -> tuple[list[float], float]:
    options = EnhanceOptions(output_dir=out, overwrite=True)
    run_quietly(client, sources[:1], options)  # warm-up
    singles = []
    for source in sources:
        start = time.perf_counter()
        summary = run_quietly(client, [source], options)
        singles.append(time.perf_counter() - start)
        assert summary.ok == 1, summary
    start = time.perf_counter()
    batch = run_quietly(client, sources, options)
    assert batch.ok == len(sources), batch
    return singles, (time.perf_counter() - start) / len(sources)


def concurrent_clients(connection, sources: list[Path], out: Path, clients: int, jobs: int) -> tuple[int, int, float, set]:
    summaries: list[JobSummary] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client_thread(number: int) -> None:
        try:
            with BridgeClient(connection) as client:
                for job in range(jobs):
                    source = sources[(number * jobs + job) % len(sources)]
                    summary = run_quietly(client, [source], EnhanceOptions(output_dir=out / f"client{number}"))
                    with lock:
                        summaries.append(summary)
        except BaseException as exc:  # reported in the table, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    completed = sum(s.ok for s in summaries)
    written = sum(1 for _ in out.glob("client*/*.dng"))
    return completed, written, elapsed, {s.job for s in summaries}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="model weights (default: a tiny untrained model)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", default="256x384", help="HEIGHTxWIDTH of the test DNGs")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per client")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as scratch:
        root = Path(scratch)
        weights = args.weights or tiny_weights(root)
        (root / "src").mkdir()
        sources = make_sources(root / "src", args.files, height, width)

        in_process = time_in_process(weights, sources, root / "out-inprocess")

        os.environ["LR_BRIDGE_MODEL"] = str(weights.absolute())
        state_dir = root / "state"
        daemon = start_daemon(state_dir)
        try:
            startup = time.perf_counter()
            while read_state(state_dir) is None and daemon.poll() is None:
                time.sleep(0.02)
            connection = connect(state_dir, autostart=False, timeout_s=120)
            ready_s = time.perf_counter() - startup
            with BridgeClient(connection) as client:
                singles, batch_per_file = time_through_daemon(client, sources, root / "out-daemon")
            completed, written, elapsed, job_ids = concurrent_clients(
                connection, sources, root / "out-concurrent", args.clients, args.jobs)
        finally:
            daemon.terminate()
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()

    base = statistics.median(in_process) * 1000
    single = statistics.median(singles) * 1000
    batch = batch_per_file * 1000
    expected = args.clients * args.jobs
    print(f"lr-bridge benchmark: {args.files} DNGs of {height}x{width}, model {weights.name}, "
          f"torch threads {torch.get_num_threads()}, daemon ready after {ready_s:.1f} s")
    print(f"{'measure':<44}{'value':>12}")
    print("-" * 56)
    print(f"{'in-process engine, median per file':<44}{base:>9.1f} ms")
    print(f"{'daemon, one file per job, median':<44}{single:>9.1f} ms")
    print(f"{'daemon, one job of all files, per file':<44}{batch:>9.1f} ms")
    print(f"{'overhead per file, one-file jobs':<44}{single - base:>9.1f} ms")
    print(f"{'overhead per file, batch job':<44}{batch - base:>9.1f} ms")
    print(f"{f'{args.clients} clients x {args.jobs} jobs: completed':<44}{completed:>9d} / {expected}")
    print(f"{'  distinct jobs, outputs written':<44}{len(job_ids):>5d}, {written:>4d}")
    print(f"{'  total time':<44}{elapsed:>10.2f} s")
    print(f"{'  per job':<44}{elapsed / expected * 1000:>9.1f} ms")
    ok = completed == written == len(job_ids) == expected and single - base <= OVERHEAD_TARGET_MS
    print(f"target: overhead <= {OVERHEAD_TARGET_MS:.0f} ms per file and no job lost: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
