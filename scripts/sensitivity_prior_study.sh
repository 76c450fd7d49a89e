#!/usr/bin/env bash
# Does a sensitivity prior help QSS? (issue 8, docs/results.md) `autoqnn analyze` on the search space (accuracy
# drops on the held-out val split), then QSS at the uniform-fixed:B budget with `--init-from-sensitivity`, with
# the recipe of bench/pareto.sh --quick (so its CSV rows are the no-prior baseline), plus the prior's own argmax
# (--epochs 0: a greedy sensitivity allocation repaired to the budget). One TSV row per run.
# Env: BIN (build/autoqnn), MODEL (lenet5), FP (runs/$MODEL_fp32.pt), BITS (2), SEEDS ("1 2 3"), LIMIT (12000),
#      SEARCH_EPOCHS (1), WARMUP (0), FT_EPOCHS (1), ARCH_LR (0.05), SCALE (20), SPACE (lowbit), THREADS,
#      OUT_DIR (runs/sens_prior_$MODEL)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/autoqnn}; MODEL=${MODEL:-lenet5}; FP=${FP:-runs/${MODEL}_fp32.pt}; BITS=${BITS:-2}
SEEDS=${SEEDS:-1 2 3}; LIMIT=${LIMIT:-12000}; SEARCH_EPOCHS=${SEARCH_EPOCHS:-1}; WARMUP=${WARMUP:-0}
FT_EPOCHS=${FT_EPOCHS:-1}; ARCH_LR=${ARCH_LR:-0.05}; SCALE=${SCALE:-20}
SPACE=${SPACE:-configs/search_space/lowbit.json}; OUT_DIR=${OUT_DIR:-runs/sens_prior_$MODEL}
[ -x "$BIN" ] || { echo "sensitivity_prior_study: $BIN is not an executable" >&2; exit 1; }
[ -f "$FP" ] || { echo "sensitivity_prior_study: FP32 checkpoint $FP missing" >&2; exit 1; }
mkdir -p "$OUT_DIR"
C=(--model "$MODEL" --dataset fashion-mnist --train-limit "$LIMIT")
[ -n "${THREADS:-}" ] && C+=(--threads "$THREADS")
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
SENS=$OUT_DIR/sens.csv
[ -f "$SENS" ] || "$BIN" analyze "${C[@]}" --checkpoint "$FP" --space "$SPACE" --out "$SENS" > "$OUT_DIR/analyze.txt"
"$BIN" policy uniform --model "$MODEL" --weight "fixed:$BITS" --out "$OUT_DIR/budget.json" >&2
KIB=$(j "$OUT_DIR/budget.json" "d['totals']['weight_bytes'] / 1024")
TSV=$OUT_DIR/results.tsv
printf 'run\tseed\tweight_bytes\tavg_bits\ttop1\tlayers\n' > "$TSV.tmp"
run() {  # name seed epochs
  local name=$1 seed=$2 ep=$3
  "$BIN" search "${C[@]}" --seed "$seed" --checkpoint "$FP" --method qss --arch-lr "$ARCH_LR" --space "$SPACE" \
    --budget-kib "$KIB" --epochs "$ep" --warmup "$WARMUP" --init-from-sensitivity "$SENS" --sensitivity-scale "$SCALE" \
    --out "$OUT_DIR/$name.json" >&2
  "$BIN" finetune "${C[@]}" --seed "$seed" --checkpoint "$FP" --policy "$OUT_DIR/$name.json" --epochs "$FT_EPOCHS" \
    --out "$OUT_DIR/$name.pt" >&2
  local top1
  top1=$("$BIN" eval --model "$MODEL" --checkpoint "$OUT_DIR/$name.pt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$(j "$OUT_DIR/$name.json" "d['totals']['weight_bytes']")" \
    "$(j "$OUT_DIR/$name.json" "round(d['totals']['avg_weight_bits'], 3)")" "$top1" \
    "$(j "$OUT_DIR/$name.json" "' '.join(l['weight'] for l in d['layers'].values())")" | tee -a "$TSV.tmp" >&2
}
run prior_argmax 1 0
for s in $SEEDS; do run "qss_prior_s$s" "$s" "$SEARCH_EPOCHS"; done
mv "$TSV.tmp" "$TSV"
cat "$TSV"
