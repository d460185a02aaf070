"""``lowlight-raw``: enhance RAW files from the command line; train and evaluate the model."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .backends.spec import ClusterSpec, add_cluster_arguments
from .errors import LowlightError
from .options import EnhanceOptions, add_arguments

if TYPE_CHECKING:
    from .backends.base import Backend


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowlight-raw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lowlight-raw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    enhance = sub.add_parser("enhance", help="brighten and denoise RAW files into DNG, TIFF or JPEG")
    enhance.add_argument("files", nargs="+", type=Path, help="camera RAW files (anything LibRaw reads)")
    add_arguments(enhance)
    enhance.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    enhance.add_argument("--tile", type=int, default=None, help="tile size in packed pixels (memory bound)")
    enhance.add_argument("--noiseprofiles", type=Path, help="darktable noiseprofiles.json (default: darktable's, if installed)")
    enhance.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_cluster_arguments(enhance)
    enhance.set_defaults(run=_run_enhance)

    export = sub.add_parser("export-dtmodel", help="write our networks as a darktable 5.6+ neural-restore raw-denoise package")
    export.add_argument("-o", "--output", type=Path, default=None, help="the .dtmodel to write (default: ./rawdenoise-lowlight-raw.dtmodel)")
    export.add_argument("--model", default="fast", help="fast|fast-licence-clean|quality (its Bayer and linear networks) or PATH "
                                                        "(one Bayer or linear weight file)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing package")
    export.set_defaults(run=_run_export_dtmodel)

    # train and evaluate own their options; main() hands them everything after the word
    sub.add_parser("train", help="train the network (see lowlight_raw/weights/MODEL_CARD.md); train --help for options")
    sub.add_parser("evaluate", help="score naive, NLM and the model on the held-out set (--sweep: the noise sweep); evaluate [--sweep] --help")
    return parser


def _run_training_tool(name: str, argv: list[str]) -> int:
    if name == "train":
        from .training.train import main as tool
    elif "--sweep" in argv:
        from .training.sweep import main as tool
    else:
        from .training.evaluate import main as tool
    return tool(argv)


def _run_enhance(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    options = EnhanceOptions.from_args(args)
    try:
        options.validate()
        backend = _backend(args, options)
    except (ValueError, LowlightError) as exc:
        print(f"lowlight-raw: error: {exc}", file=sys.stderr)
        return 2
    ok, failed = 0, 0
    total = len(args.files)
    bar = tqdm(total=total, unit="file", disable=args.quiet or None, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.2f}/{total} [{elapsed}<{remaining}]")

    def progress(index: int, fraction: float, stage: str) -> None:
        bar.n = max(bar.n, index + fraction)
        bar.set_postfix_str(f"{shown(args.files[index].name)}: {stage}", refresh=False)
        bar.refresh()

    try:
        for index, outcome in backend.enhance(args.files, options, progress):
            if isinstance(outcome, LowlightError):
                failed += 1
                bar.write(f"error: {shown(outcome)}", file=sys.stderr)
                continue
            ok += 1
            bar.write(f"{shown(outcome.source)} → {shown(outcome.output)}  (EV {outcome.ev:+.2f}, {outcome.seconds['total']:.1f} s)")
    finally:
        backend.close()
    bar.n = total
    bar.close()
    summary = f"{ok} enhanced, {failed} failed" if failed else f"{ok} enhanced"
    print(summary, file=sys.stderr)
    return 0 if failed == 0 else 1


def _run_export_dtmodel(args: argparse.Namespace) -> int:
    try:
        from .darktable_ai.package import PACKAGE_ID, write_package

        info = write_package(args.output or Path(f"{PACKAGE_ID}.dtmodel"), args.model, overwrite=args.overwrite)
    except ModuleNotFoundError as exc:  # onnx, onnxruntime: the optional dtmodel extra
        print(f"lowlight-raw: error: export-dtmodel needs {exc.name} (pip install 'lowlight-raw[dtmodel]')", file=sys.stderr)
        return 2
    except LowlightError as exc:
        print(f"lowlight-raw: error: {shown(exc)}", file=sys.stderr)
        return 1
    slots = ", ".join(f"{g.file} {list(g.input_shape)} → {list(g.output_shape)}" for g in info.graphs.values())
    print(f"{shown(info.path)}: {slots}, opset {max(g.opset for g in info.graphs.values())}")
    return 0


def shown(value: object) -> str:
    """``value`` as one printable line: file name bytes that are not UTF-8 appear as ``\\xNN``."""
    text = os.fsencode(str(value)).decode("utf-8", "backslashreplace")
    return " ".join(text.split())


def _interrupt(_signum: int, _frame) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: no partial output is left


def _backend(args: argparse.Namespace, options: EnhanceOptions) -> Backend:
    """Where the files are enhanced: here (a warm engine) or on the Dask cluster the options name.

    Raises ``ValueError`` / :class:`LowlightError` (exit 2) when neither can be used.
    """
    from .backends.base import LocalBackend

    spec = ClusterSpec.from_args(args)
    if spec is None:
        from .engine import Enhancer

        return LocalBackend(Enhancer(options.model_choice or "auto", args.device, args.tile, args.noiseprofiles))
    from .backends.dask_client import connect
    from .backends.spec import ClusterError

    try:
        return connect(spec, options.model_choice or "auto", args.device)
    except ClusterError as exc:
        raise ValueError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("train", "evaluate"):
        return _run_training_tool(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("lowlight-raw: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
