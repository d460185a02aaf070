#!/usr/bin/env bash
# The whole GPU session as one command (docs/gpu.md): train the quality model for MINUTES, then
# benchmark fast vs quality (float32 and bf16, end to end, network alone, daemon per file).
#   scripts/gpu_run.sh OUT_DIR [MINUTES]        MINUTES of training, default 5.5: with start-up
#                                               (~30 s) and the bench (≤ 200 s) the run ends
#                                               within ~9.5 min, inside one 10-minute command
# OUT_DIR gets lowlight-quality.pt + .json (written every minute), train.log, bench.txt, gpu.txt.
# Needs cache/training (training photos) and .whl (rawpy, exiv2, exifread, pyzmq for the engine
# and daemon: scripts/fetch_device_wheels.sh) in the working tree. DEVICE, TRAIN_OPTIONS and
# BENCH_OPTIONS override the device and add options, for a rehearsal on the CPU:
#   DEVICE=cpu TRAIN_OPTIONS="--width 4 --batch 2 --patch 32" BENCH_OPTIONS="--megapixels 0.1 --daemon-files 2" \
#     scripts/gpu_run.sh /tmp/rehearsal 0.1
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu_run.sh OUT_DIR [MINUTES]}"
minutes="${2:-5.5}"
device="${DEVICE:-cuda}"
python="${PYTHON:-python3}"
[[ -z "${PYTHON:-}" && -x .venv/bin/python ]] && python=.venv/bin/python
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$out/gpu.txt"
# shellcheck disable=SC2086  # TRAIN_OPTIONS / BENCH_OPTIONS are word lists
PYTHON="$python" scripts/gpu_train.sh "$out" "$minutes" --device "$device" ${TRAIN_OPTIONS:-} \
  || echo "gpu_run: training exited with $?"
# $OUT is emptied before the next command; a bench-only rerun on the still-warm machine finds them here
cp "$out"/lowlight-quality.* /tmp/ 2>/dev/null
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# shellcheck disable=SC2086
timeout 200 "$python" bench/bench_engine.py --device "$device" --models "fast,$out/lowlight-quality.pt" --repeats 2 \
  ${BENCH_OPTIONS:-} 2>&1 | tee "$out/bench.txt"
