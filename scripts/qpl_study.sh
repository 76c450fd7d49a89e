#!/usr/bin/env bash
# QPL study: uniform baselines, QSS, QPL and QSS+QPL at 2- and 3-bit-average weight budgets, each policy
# finetuned with the same recipe and evaluated on the test set; one TSV row per policy, with the per-layer
# weight specs (learned bits) and wall times.
#
# Usage: scripts/qpl_study.sh MODEL FP32_CHECKPOINT        MODEL = lenet5 | resnet20
# Knobs (env):
#   BIN=build/autoqnn        the autoqnn binary
#   DEVICE=cpu               --device for every step (cuda on a GPU machine)
#   DATASET=fashion-mnist
#   OUT=runs/qpl_study_$MODEL
#   TRAIN_LIMIT=0            training images for search and finetuning (0 = all)
#   TEST_LIMIT=0             test images for eval (0 = all)
#   SEARCH_EPOCHS=3 WARMUP=1 search epochs (each stage of qss+qpl runs as many)
#   FT_EPOCHS=1 FT_LR=0.01   finetuning (same recipe for every row; FT_ARGS adds options, e.g. --hflip)
#   SEED=1 THREADS=          --seed / --threads
#   BUDGETS="2 3"            average weight bits
#   UNIFORM="vecq fixed"     schemes of the uniform baselines (every layer at BUDGET bits)
#   SPACE=configs/search_space/lowbit.json   QSS space (also QSS+QPL's stage 1)
#   ARCH_LR=0.05 BIT_LR=0.05 architecture (QSS) and bitwidth (QPL) learning rates
#   QPL_SCHEME=vecq:4        QPL's scheme for every layer
#   QPL_INIT=budget          QPL's initial bitwidth: "budget" (= BUDGET bits), a number, or 0 (the scheme's bits)
#   METHODS="uniform qss qpl qss+qpl"   which rows to produce
# Rows already in the summary are skipped (rerun to continue an interrupted study).
set -euo pipefail
MODEL=${1:?usage: scripts/qpl_study.sh lenet5|resnet20 FP32_CHECKPOINT}
FP=${2:?usage: scripts/qpl_study.sh lenet5|resnet20 FP32_CHECKPOINT}
BIN=${BIN:-build/autoqnn}
DEVICE=${DEVICE:-cpu}
DATASET=${DATASET:-fashion-mnist}
OUT=${OUT:-runs/qpl_study_$MODEL}
TRAIN_LIMIT=${TRAIN_LIMIT:-0}
TEST_LIMIT=${TEST_LIMIT:-0}
SEARCH_EPOCHS=${SEARCH_EPOCHS:-3}
WARMUP=${WARMUP:-1}
FT_EPOCHS=${FT_EPOCHS:-1}
FT_LR=${FT_LR:-0.01}
FT_ARGS=${FT_ARGS:-}
SEED=${SEED:-1}
THREADS=${THREADS:-}
BUDGETS=${BUDGETS:-2 3}
UNIFORM=${UNIFORM:-vecq fixed}
SPACE=${SPACE:-configs/search_space/lowbit.json}
ARCH_LR=${ARCH_LR:-0.05}
BIT_LR=${BIT_LR:-0.05}
QPL_SCHEME=${QPL_SCHEME:-vecq:4}
QPL_INIT=${QPL_INIT:-budget}
METHODS=${METHODS:-uniform qss qpl qss+qpl}

case "$MODEL" in lenet5|resnet20) ;; *) echo "qpl_study: MODEL must be lenet5 or resnet20, got '$MODEL'" >&2; exit 2 ;; esac
[ -x "$BIN" ] || { echo "qpl_study: BIN=$BIN is not an executable (build it, or set BIN)" >&2; exit 2; }
[ -f "$FP" ] || { echo "qpl_study: FP32 checkpoint '$FP' not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "qpl_study: python3 is needed to read the JSON outputs" >&2; exit 2; }
mkdir -p "$OUT"

data=(--model "$MODEL" --dataset "$DATASET" --seed "$SEED" --device "$DEVICE")
[ -n "$THREADS" ] && data+=(--threads "$THREADS")
train=("${data[@]}" --train-limit "$TRAIN_LIMIT")
summary="$OUT/summary.tsv"
header="model\tbudget_bits\tmethod\tpolicy\tweight_bytes\tavg_bits\ttest_top1\tsearch_s\tfinetune_s\tlayers"
if [ ! -f "$summary" ]; then printf "$header\n" > "$summary.tmp" && mv "$summary.tmp" "$summary"; fi

have_row() { awk -F'\t' -v n="$1" 'NR > 1 && $4 == n { f = 1 } END { exit !f }' "$summary"; }
now() { date +%s.%N; }

# finetune + eval one policy and append its row: NAME BUDGET METHOD POLICY SEARCH_SECONDS
finetune_eval() {
  local name=$1 budget=$2 method=$3 pol=$4 search_s=$5
  local t0 t1 top1 facts
  t0=$(now)
  # shellcheck disable=SC2086
  "$BIN" finetune "${train[@]}" --checkpoint "$FP" --policy "$pol" --epochs "$FT_EPOCHS" --lr "$FT_LR" $FT_ARGS \
    --out "$OUT/$name.pt" >&2
  t1=$(now)
  top1=$("$BIN" eval "${data[@]}" --test-limit "$TEST_LIMIT" --checkpoint "$OUT/$name.pt" --json |
         python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["top1"])')
  facts=$(python3 - "$pol" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
t = p["totals"]
layers = ";".join("%s=%s" % (k, v["weight"]) + ("" if v["act"] == "fp32" else "/" + v["act"])
                  for k, v in sorted(p["layers"].items(), key=lambda kv: kv[1]["index"]))
print("%d\t%.4f\t%s" % (t["weight_bytes"], t["avg_weight_bits"], layers))
EOF
)
  local bytes bits layers
  IFS=$'\t' read -r bytes bits layers <<< "$facts"
  local ft_s
  ft_s=$(python3 -c "print('%.1f' % ($t1 - $t0))")
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$MODEL" "$budget" "$method" "$name" "$bytes" "$bits" "$top1" \
    "$search_s" "$ft_s" "$layers" >> "$summary"
  echo "qpl_study: $name: $bytes B, $bits bits/weight, top-1 $top1" >&2
}

search_args=(--epochs "$SEARCH_EPOCHS" --warmup "$WARMUP")
for B in $BUDGETS; do
  for m in $METHODS; do
    case "$m" in
      uniform)
        for s in $UNIFORM; do
          name="uniform_${s}${B}"
          have_row "$name" && continue
          "$BIN" policy uniform --model "$MODEL" --dataset "$DATASET" --weight "$s:$B" --out "$OUT/$name.json" >&2
          finetune_eval "$name" "$B" "uniform $s:$B" "$OUT/$name.json" 0
        done ;;
      qss|qpl|qss+qpl)
        name="${m/+/_}_b${B}"
        have_row "$name" && continue
        extra=()
        case "$m" in
          qss) extra=(--space "$SPACE" --arch-lr "$ARCH_LR") ;;
          qpl) init=$QPL_INIT; [ "$init" = budget ] && init=$B
               extra=(--qpl-scheme "$QPL_SCHEME" --init-bits "$init" --bit-lr "$BIT_LR") ;;
          qss+qpl) extra=(--space "$SPACE" --arch-lr "$ARCH_LR" --bit-lr "$BIT_LR") ;;
        esac
        t0=$(now)
        "$BIN" search "${train[@]}" --checkpoint "$FP" --method "$m" --avg-bits "$B" "${search_args[@]}" "${extra[@]}" \
          --out "$OUT/$name.json" --log "$OUT/$name.csv" --resume >&2
        t1=$(now)
        finetune_eval "$name" "$B" "$m" "$OUT/$name.json" "$(python3 -c "print('%.1f' % ($t1 - $t0))")" ;;
      *) echo "qpl_study: unknown method '$m' in METHODS (valid: uniform qss qpl qss+qpl)" >&2; exit 2 ;;
    esac
  done
done
column -t -s $'\t' "$summary" >&2 || cat "$summary" >&2
