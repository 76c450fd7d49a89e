#!/usr/bin/env bash
# The main job on the default data (Fashion-MNIST): installs deps if missing, builds Release, then
# trains (or reuses) an FP32 LeNet-5 and evaluates it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
AQ=build/autoqnn
RUN=${RUN_DIR:-runs/demo}
mkdir -p "$RUN"
FP="$RUN/lenet5_fp32.pt"
if [ ! -f "$FP" ]; then
  "$AQ" train --model lenet5 --epochs "${DEMO_EPOCHS:-4}" --lr 0.05 --seed 1 --out "$FP"
fi
"$AQ" eval --model lenet5 --checkpoint "$FP" --json | tee "$RUN/fp32_eval.json"
