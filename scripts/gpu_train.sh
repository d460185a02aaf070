#!/usr/bin/env bash
# The prepared GPU training run (docs/gpu.md): the quality model, SIDUNet width 32 (7.8 M
# parameters), trained for MINUTES of wall time on one CUDA GPU, batches made on the GPU.
#   scripts/gpu_train.sh OUT_DIR [MINUTES] [more lowlight-raw train options, which win]
# Every minute it writes OUT_DIR/lowlight-quality.pt (EMA weights, float16: 15 MB) and its
# .json card; OUT_DIR/train.log gets the progress (steps/s, validation PSNR) it prints.
# Needs cache/training/{train,validation}.npz and sources.json (scripts/prepare_training_data.py).
# Uses .venv/bin/python when there is one, else python3 (the GPU machine's, which has torch,
# numpy and imageio: all that training imports). tests/test_training.py rehearses this very
# script on the CPU with toy sizes, so the device run cannot fail on a typo.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu_train.sh OUT_DIR [MINUTES] [train options]}"
minutes="${2:-7}"
shift $(($# >= 2 ? 2 : 1))
python="${PYTHON:-python3}"
[[ -z "${PYTHON:-}" && -x .venv/bin/python ]] && python=.venv/bin/python
mkdir -p "$out"
# Patches of 128² packed (256² pixels): BSDS500's photos are 481×321, too small for 256² packed;
# a batch of 128 of them holds as many pixels as 32 of 256².
PYTHONUNBUFFERED=1 "$python" -m lowlight_raw.training.train \
  --device cuda --synth device --amp bf16 --channels-last \
  --width 32 --depth 5 --batch 128 --patch 128 --lr 5e-4 \
  --minutes "$minutes" --steps 1000000 --threads 8 --log-every 100 \
  --validate-minutes 1 --export "$out/lowlight-quality.pt" --export-minutes 1 --export-dtype float16 \
  --run-dir /tmp/lowlight-gpu-run --checkpoint-minutes 1000 \
  "$@" 2>&1 | tee "$out/train.log"
