#!/usr/bin/env bash
# Remake docs/before_after.jpg: examples/coffee_dark.dng as darktable renders it, beside the
# DNG lowlight-raw makes of it (what the plugin imports), both through darktable-cli with
# darktable's default processing. Needs the project's .venv and darktable-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/lowlight-raw enhance examples/coffee_dark.dng -o "$work" --format dng --quiet
for name in coffee_dark coffee_dark_lowlight; do
  source=examples/$name.dng
  [[ $name == coffee_dark ]] || source=$work/$name.dng
  darktable-cli "$source" "$work/$name.png" --width 400 --height 400 \
    --core --configdir "$work/config-$name" --cachedir "$work/cache-$name" --library :memory: \
    --conf write_sidecar_files=never >/dev/null  # a config and cache each: darktable reused a stale cached render
done
.venv/bin/python - "$work/coffee_dark.png" "$work/coffee_dark_lowlight.png" docs/before_after.jpg <<'PY'
import sys
from PIL import Image, ImageDraw

before, after = (Image.open(path).convert("RGB") for path in sys.argv[1:3])
gap, caption = 8, 22
sheet = Image.new("RGB", (before.width + gap + after.width, max(before.height, after.height) + caption), "white")
sheet.paste(before, (0, caption))
sheet.paste(after, (before.width + gap, caption))
draw = ImageDraw.Draw(sheet)
draw.text((4, 5), "coffee_dark.dng, as shot", fill="black")
draw.text((before.width + gap + 4, 5), "coffee_dark_lowlight.dng (enhance low light)", fill="black")
sheet.save(sys.argv[3], quality=90, optimize=True)
print(f"{sys.argv[3]}: {sheet.width}x{sheet.height}")
PY
