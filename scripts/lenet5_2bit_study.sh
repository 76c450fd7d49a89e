#!/usr/bin/env bash
# LeNet-5 / Fashion-MNIST at a 2-bit-average weight budget: QSS search + finetune vs the uniform 2-bit
# policies of the same size (same finetune epochs). Results go to runs/study_2bit/ (summary.tsv).
# Usage: scripts/lenet5_2bit_study.sh [BUILD_DIR] ; knobs via env: TRAIN_LIMIT (0 = all), FT_EPOCHS,
# SEARCH_EPOCHS, WARMUP, SEED, ARCH_LR.
set -euo pipefail
BUILD=${1:-build}
Q="$BUILD/autoqnn"
FP=${FP:-runs/lenet5_fp32.pt}
OUT=${OUT:-runs/study_2bit}
TRAIN_LIMIT=${TRAIN_LIMIT:-0}
FT_EPOCHS=${FT_EPOCHS:-2}
SEARCH_EPOCHS=${SEARCH_EPOCHS:-4}
WARMUP=${WARMUP:-1}
SEED=${SEED:-1}
ARCH_LR=${ARCH_LR:-0.05}
mkdir -p "$OUT"
common=(--model lenet5 --dataset fashion-mnist --train-limit "$TRAIN_LIMIT" --seed "$SEED")
summary="$OUT/summary.tsv"
printf "policy\tweight_bytes\tavg_bits\ttest_top1\n" > "$summary"

finetune_eval() {  # name policy.json
  local name=$1 pol=$2
  "$Q" finetune "${common[@]}" --checkpoint "$FP" --policy "$pol" --epochs "$FT_EPOCHS" --out "$OUT/$name.pt" >&2
  local top1
  top1=$("$Q" eval --model lenet5 --checkpoint "$OUT/$name.pt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  local bytes bits
  bytes=$(python3 -c "import json; print(json.load(open('$pol'))['totals']['weight_bytes'])")
  bits=$(python3 -c "import json; print(round(json.load(open('$pol'))['totals']['avg_weight_bits'], 4))")
  printf "%s\t%s\t%s\t%s\n" "$name" "$bytes" "$bits" "$top1" | tee -a "$summary"
}

# 1. uniform 2-bit policies (every layer, weights only; activations fp32 as in the search space)
best_bytes=0
for w in twn fixed:2 vecq:2 mul2q:2 resq:2 uniform:2; do
  name="uniform_${w//:/}"
  "$Q" policy uniform --model lenet5 --dataset fashion-mnist --weight "$w" --out "$OUT/$name.json" >&2
  finetune_eval "$name" "$OUT/$name.json"
done
# the budget: the size of the most accurate uniform 2-bit policy above
budget_bytes=$(awk -F'\t' 'NR > 1 && $4 > best { best = $4; b = $2 } END { print b }' "$summary")
budget_kib=$(python3 -c "print($budget_bytes / 1024)")

# 2. QSS search at that budget, then the same finetuning
"$Q" search "${common[@]}" --checkpoint "$FP" --space configs/search_space/lowbit.json --budget-kib "$budget_kib" \
    --epochs "$SEARCH_EPOCHS" --warmup "$WARMUP" --arch-lr "$ARCH_LR" --out "$OUT/qss.json" --log "$OUT/qss.csv" >&2
finetune_eval qss "$OUT/qss.json"
column -t "$summary" >&2
