#!/usr/bin/env bash
# The main job on the default data (Fashion-MNIST), the whole user journey:
#   train (or reuse) an FP32 LeNet-5 -> search a mixed-precision policy at a 2-bit-average weight budget
#   -> policy show -> finetune -> eval -> export --verify, then a before/after summary.
# Installs deps if missing and builds Release first. RUN_DIR (default runs/demo) keeps the outputs;
# an existing FP32 checkpoint there is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
AQ=build/autoqnn
RUN=${RUN_DIR:-runs/demo}
mkdir -p "$RUN"
FP="$RUN/lenet5_fp32.pt"
start=$(date +%s)

if [ ! -f "$FP" ]; then
  echo "== 1/7 train FP32 LeNet-5" >&2
  "$AQ" train --model lenet5 --epochs "${DEMO_EPOCHS:-4}" --lr 0.05 --seed 1 --out "$FP"
else
  echo "== 1/7 reuse $FP" >&2
fi
"$AQ" eval --model lenet5 --checkpoint "$FP" --json > "$RUN/fp32_eval.json"

echo "== 2/7 search (QSS) at a 2-bit-average weight budget" >&2
"$AQ" search --model lenet5 --checkpoint "$FP" --avg-bits 2 --warmup 0 --epochs "${DEMO_SEARCH_EPOCHS:-1}" \
  --train-limit "${DEMO_SEARCH_LIMIT:-12000}" --seed 1 --out "$RUN/policy_2bit.json" --log "$RUN/search.csv"

echo "== 3/7 policy" >&2
"$AQ" policy show "$RUN/policy_2bit.json"

echo "== 4/7 finetune" >&2
"$AQ" finetune --model lenet5 --checkpoint "$FP" --policy "$RUN/policy_2bit.json" \
  --epochs "${DEMO_FT_EPOCHS:-1}" --seed 1 --out "$RUN/lenet5_q.pt"

echo "== 5/7 eval" >&2
"$AQ" eval --model lenet5 --checkpoint "$RUN/lenet5_q.pt" --json > "$RUN/q_eval.json"

echo "== 6/7 export --verify" >&2
"$AQ" export --model lenet5 --checkpoint "$RUN/lenet5_q.pt" --out "$RUN/lenet5_q.safetensors" --verify

echo "== 7/7 export --format onnx --verify (ONNX Runtime on the test set)" >&2
bash scripts/install-ort.sh
"$AQ" export --model lenet5 --checkpoint "$RUN/lenet5_q.pt" --format onnx --out "$RUN/lenet5_q.onnx" --verify

python3 - "$RUN" "$start" <<'PY'
import json, os, sys, time
run, start = sys.argv[1], int(sys.argv[2])
fp = json.load(open(os.path.join(run, "fp32_eval.json")))
q = json.load(open(os.path.join(run, "q_eval.json")))
print("\n== summary (LeNet-5, Fashion-MNIST test set)")
print(f"FP32      top-1 {100*fp['top1']:.2f} %   weights {fp['weight_bytes']/1024:.1f} KiB (32 bits/weight)")
print(f"quantized top-1 {100*q['top1']:.2f} %   weights {q['weight_bytes']/1024:.1f} KiB ({q['avg_weight_bits']:.2f} bits/weight)")
print(f"compression {fp['weight_bytes']/q['weight_bytes']:.1f}x, accuracy change {100*(q['top1']-fp['top1']):+.2f} points")
print(f"packed file {os.path.join(run, 'lenet5_q.safetensors')}: {os.path.getsize(os.path.join(run, 'lenet5_q.safetensors'))} bytes")
print(f"ONNX file   {os.path.join(run, 'lenet5_q.onnx')}: {os.path.getsize(os.path.join(run, 'lenet5_q.onnx'))} bytes (verified in ONNX Runtime)")
print(f"wall time (after build) {int(time.time())-start} s")
PY
