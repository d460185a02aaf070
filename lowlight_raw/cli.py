"""``lowlight-raw``: enhance RAW files from the command line; train and evaluate the model."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import LowlightError


def parse_ev(text: str) -> float | None:
    """argparse type for ``--ev``: ``auto`` (None) or a number of stops."""
    if text.lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number like +6, got {text!r}") from None


def parse_strength(text: str) -> float:
    """argparse type for ``--strength``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowlight-raw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lowlight-raw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    enhance = sub.add_parser("enhance", help="brighten and denoise RAW files into DNG, TIFF or JPEG")
    enhance.add_argument("files", nargs="+", type=Path, help="camera RAW files (anything LibRaw reads)")
    enhance.add_argument("-o", "--output-dir", type=Path, help="folder for the outputs (default: next to each source)")
    enhance.add_argument("-f", "--format", default="dng", choices=("dng", "tiff", "jpeg"), help="output format (default dng)")
    enhance.add_argument("--ev", type=parse_ev, default=None, metavar="auto|N", help="brightening in EV, or auto (default)")
    enhance.add_argument("--strength", type=parse_strength, default=1.0, help="0 = amplified input only, 1 = full network (default)")
    enhance.add_argument("--overwrite", action="store_true", help="replace an existing output instead of numbering a new one")
    enhance.add_argument("--linear", action="store_true", help="TIFF: write linear values instead of the sRGB curve")
    enhance.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    enhance.add_argument("--model", default="auto", metavar="auto|fast|quality|PATH",
                         help="auto (quality on a GPU, fast on CPU), a shipped model, or a weight file")
    enhance.add_argument("--tile", type=int, default=None, help="tile size in packed pixels (memory bound)")
    enhance.add_argument("--noiseprofiles", type=Path, help="darktable noiseprofiles.json (default: darktable's, if installed)")
    enhance.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    enhance.set_defaults(run=_run_enhance)

    # train and evaluate own their options; main() hands them everything after the word
    sub.add_parser("train", help="train the network (see weights/MODEL_CARD.md); train --help for options")
    sub.add_parser("evaluate", help="score naive, NLM and the model on the held-out set; evaluate --help")
    return parser


def _run_training_tool(name: str, argv: list[str]) -> int:
    if name == "train":
        from .training.train import main as tool
    else:
        from .training.evaluate import main as tool
    return tool(argv)


def _run_enhance(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .engine import EnhanceOptions, Enhancer
    from .tiling import DEFAULT_TILE

    options = EnhanceOptions(
        output_format=args.format,
        ev=args.ev,
        strength=args.strength,
        output_dir=args.output_dir,
        overwrite=args.overwrite,
        linear_tiff=args.linear,
    )
    try:
        options.validate()
        enhancer = Enhancer(args.model, args.device, args.tile or DEFAULT_TILE, args.noiseprofiles)
    except (ValueError, LowlightError) as exc:
        print(f"lowlight-raw: error: {exc}", file=sys.stderr)
        return 2
    ok, failed = 0, 0
    total = len(args.files)
    bar = tqdm(total=total, unit="file", disable=args.quiet or None, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.2f}/{total} [{elapsed}<{remaining}]")
    for index, source in enumerate(args.files):
        def progress(fraction: float, stage: str, index: int = index) -> None:
            bar.n = index + fraction
            bar.set_postfix_str(f"{source.name}: {stage}", refresh=False)
            bar.refresh()

        try:
            result = enhancer.enhance(source, options, progress)
        except LowlightError as exc:
            failed += 1
            bar.write(f"error: {shown(exc)}", file=sys.stderr)
            continue
        except MemoryError:
            failed += 1
            bar.write(f"error: {shown(source)}: out of memory (try a smaller --tile)", file=sys.stderr)
            continue
        except Exception as exc:  # a bug fails this file only: one line, and the batch goes on
            failed += 1
            bar.write(f"error: {shown(source)}: internal error ({exc.__class__.__name__}: {shown(exc)})", file=sys.stderr)
            continue
        ok += 1
        bar.write(f"{shown(source)} → {shown(result.output)}  (EV {result.ev:+.2f}, {result.seconds['total']:.1f} s)")
    bar.n = total
    bar.close()
    summary = f"{ok} enhanced, {failed} failed" if failed else f"{ok} enhanced"
    print(summary, file=sys.stderr)
    return 0 if failed == 0 else 1


def shown(value: object) -> str:
    """``value`` as one printable line: file name bytes that are not UTF-8 appear as ``\\xNN``."""
    text = os.fsencode(str(value)).decode("utf-8", "backslashreplace")
    return " ".join(text.split())


def _interrupt(_signum: int, _frame) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: no partial output is left


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
