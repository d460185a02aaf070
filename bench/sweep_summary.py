"""The noise sweep's summary: the model against the best tuned classical method, per layout and level.

    python bench/sweep_summary.py runs/sweep-bayer.json [runs/model-bayer.json …] [--plot docs/noise_sweep.png]

Reads the JSON tables ``lowlight-raw evaluate --sweep --json`` writes; a later file's methods
replace an earlier one's, so the slow tuned baselines (CBM3D and darktable: about an hour for
Bayer) are run once and the model, which takes seconds, is scored again after each change
(``--methods model``). Prints the README's table: PSNR / SSIM of the best classical method (which
one) and of the model, their difference, shadow ΔL\\* and edge chroma of both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CLASSICAL = ("classical", "nlm", "bm3d", "darktable")  # what "best tuned classical" is chosen from
LEVEL_NAMES = ("x1", "x3", "x10", "x30", "x100", "x300")


def merged(paths: list[Path]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{layout: {level: {method: scores}}}`` from every file, later files' methods replacing earlier ones'."""
    tables: dict = {}
    for path in paths:
        for layout, levels in json.loads(Path(path).read_text()).items():
            for level, methods in levels.items():
                tables.setdefault(layout, {}).setdefault(level, {}).update(methods)
    return tables


def summary(tables: dict) -> str:
    """Markdown: per layout, the best tuned classical method and the model at every level, and the gaps."""
    levels = [name for name in LEVEL_NAMES if any(name in table for table in tables.values())]
    lines = ["| layout | | " + " | ".join(f"×{name[1:]}" for name in levels) + " |", "|---|---|" + "---|" * len(levels)]
    for layout, table in tables.items():
        best, model = {}, {}
        for level in levels:
            rows = table.get(level, {})
            classical = {m: r for m, r in rows.items() if m in CLASSICAL}
            best[level] = max(classical.items(), key=lambda item: item[1]["psnr"]) if classical else None
            model[level] = rows.get("model")

        def cells(render) -> str:
            return " | ".join(render(level) for level in levels)

        def scores(r: dict | None, name: str = "") -> str:
            return "–" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f}" + (f" ({name})" if name else "")

        def both(key: str, fmt: str):
            def render(level: str) -> str:
                if model[level] is None or best[level] is None:
                    return "–"
                return f"{model[level][key]:{fmt}} ({best[level][1][key]:{fmt}})"
            return render

        lines.append(f"| {layout} | best tuned classical | " + cells(lambda lv: scores(best[lv][1], best[lv][0]) if best[lv] else "–") + " |")
        lines.append("| | model | " + cells(lambda lv: scores(model[lv])) + " |")
        lines.append("| | model − best classical, dB | " + cells(
            lambda lv: f"**{model[lv]['psnr'] - best[lv][1]['psnr']:+.2f}**" if model[lv] and best[lv] else "–") + " |")
        lines.append("| | shadow ΔL\\*, model (best classical) | " + cells(both("shadow_dl", "+.1f")) + " |")
        lines.append("| | edge chroma a\\*b\\*, model (best classical) | " + cells(both("edge_chroma", ".1f")) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path, help="sweep JSON files; later ones' methods win")
    parser.add_argument("--plot", type=Path, help="also draw the merged tables' PSNR against darkness as this PNG")
    args = parser.parse_args()
    tables = merged(args.tables)
    print(summary(tables))
    if args.plot:
        from lowlight_raw.training.sweep import plot_sweep

        print(f"plot: {plot_sweep(tables, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
