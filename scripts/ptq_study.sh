#!/usr/bin/env bash
# Post-training quantization study (docs/ptq.md, docs/results.md "Post-training quantization"): for one
# model + FP32 checkpoint, without any finetuning,
#   W4A4 and W3A4: naive min-max | +ACIQ without / with the guard | +bit allocation | +bias correction |
#   all (+ BN folding, guarded ACIQ) | all without ACIQ
#   AFP at 4 / 5 / 6 bits (weights; E chosen per model by annealing, and per layer)
# and print a markdown table (also written to $OUT_DIR/table.md; raw JSON lines in $OUT_DIR/results.jsonl).
#
# Environment (all optional):
#   BIN         autoqnn binary                   (default: build/autoqnn)
#   MODEL       zoo model                        (default: lenet5)
#   FP          FP32 checkpoint                  (default: runs/${MODEL}_fp32.pt)
#   DATASET     --dataset                        (default: fashion-mnist)
#   DEVICE      --device                         (default: cpu)
#   TEST_LIMIT  --test-limit (0 = all)           (default: 0)
#   CALIB       --calib-batches                  (default: 8)
#   KEEP        --keep-first-last bits (0 = off) (default: 8)
#   ACIQ        laplace | gauss                  (default: laplace)
#   BC          mean | mean+var                  (default: mean)
#   OUT_DIR     work directory                   (default: runs/ptq_${MODEL})
#   ARGS        extra flags for every verb, e.g. "--threads 2 --seed 1"
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-build/autoqnn}
MODEL=${MODEL:-lenet5}
FP=${FP:-runs/${MODEL}_fp32.pt}
DATASET=${DATASET:-fashion-mnist}
DEVICE=${DEVICE:-cpu}
TEST_LIMIT=${TEST_LIMIT:-0}
CALIB=${CALIB:-8}
KEEP=${KEEP:-8}
ACIQ=${ACIQ:-laplace}
BC=${BC:-mean}
OUT_DIR=${OUT_DIR:-runs/ptq_${MODEL}}
ARGS=${ARGS:-}

[ -x "$BIN" ] || { echo "ptq_study: $BIN not built (scripts/build.sh)" >&2; exit 1; }
[ -f "$FP" ] || { echo "ptq_study: FP32 checkpoint $FP missing (autoqnn train --model $MODEL --out $FP)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "ptq_study: python3 is needed to read the JSON results" >&2; exit 1; }
mkdir -p "$OUT_DIR"
RES="$OUT_DIR/results.jsonl"
: > "$RES"
COMMON=(--model "$MODEL" --dataset "$DATASET" --device "$DEVICE" --test-limit "$TEST_LIMIT")
# shellcheck disable=SC2206
EXTRA=($ARGS)

record() {  # name, then the JSON line on stdin
  python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); d["run"]=sys.argv[1]; print(json.dumps(d))' "$1" >> "$RES"
}

fp_json=$("$BIN" eval "${COMMON[@]}" "${EXTRA[@]}" --checkpoint "$FP" --json)
echo "$fp_json" | record "fp32"

for wa in "4 4" "3 4"; do
  set -- $wa
  W=$1 A=$2
  base=(--weight "uniform:$W:per_channel" --act "uniform:$A:asym" --keep-first-last "$KEEP" --calib-batches "$CALIB")
  declare -A cfg=(
    [naive]=""
    [aciqraw]="--aciq $ACIQ --no-aciq-guard"
    [aciq]="--aciq $ACIQ"
    [bitalloc]="--bit-alloc weights,acts"
    [biascorr]="--bias-correction $BC"
    [all]="--fold-bn --aciq $ACIQ --bit-alloc weights,acts --bias-correction $BC"
    [noaciq]="--fold-bn --bit-alloc weights,acts --bias-correction $BC"
  )
  for name in naive aciqraw aciq bitalloc biascorr all noaciq; do
    tag="W${W}A${A}_$name"
    echo "ptq_study: $tag" >&2
    # shellcheck disable=SC2086
    "$BIN" ptq "${COMMON[@]}" "${EXTRA[@]}" --checkpoint "$FP" "${base[@]}" ${cfg[$name]} \
      --out "$OUT_DIR/$tag.pt" --policy-out "$OUT_DIR/$tag.json" --eval --json | record "$tag"
  done
done

for n in 4 5 6; do
  for mode in model layer; do
    tag="AFP${n}_$mode"
    flag=(); [ "$mode" = layer ] && flag=(--per-layer)
    echo "ptq_study: $tag" >&2
    "$BIN" afp "${COMMON[@]}" "${EXTRA[@]}" --checkpoint "$FP" --bits "$n" "${flag[@]}" --search anneal \
      --out "$OUT_DIR/$tag.json" --eval --json | record "$tag"
  done
done

python3 - "$RES" "$MODEL" <<'PY' | tee "$OUT_DIR/table.md"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line); rows[d["run"]] = d
fp = rows["fp32"]["top1"] * 100
print(f"{sys.argv[2]}: FP32 top-1 {fp:.2f} % (n={rows['fp32']['n']}); no finetuning\n")
print("| config | naive | +ACIQ (no guard) | +ACIQ (guard) | +bit alloc | +bias corr | all (+BN fold, guarded ACIQ) | gain all vs naive | all without ACIQ | gain vs naive |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for wa in ("W4A4", "W3A4"):
    v = [rows[f"{wa}_{k}"]["top1"] * 100 for k in ("naive", "aciqraw", "aciq", "bitalloc", "biascorr", "all", "noaciq")]
    print(f"| {wa} | " + " | ".join(f"{x:.2f}" for x in v[:6]) + f" | {v[5]-v[0]:+.2f} | {v[6]:.2f} | {v[6]-v[0]:+.2f} |")
print("\n| AFP (weights only, acts fp32) | 4 bits | 5 bits | 6 bits |")
print("| --- | --- | --- | --- |")
for mode, label in (("model", "one E per model"), ("layer", "E per layer")):
    v = [rows[f"AFP{n}_{mode}"] for n in (4, 5, 6)]
    print(f"| {label} | " + " | ".join(f"{d['top1']*100:.2f} ({d['avg_weight_bits']:.2f} b/w)" for d in v) + " |")
PY
