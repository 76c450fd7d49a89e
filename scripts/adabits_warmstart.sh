#!/usr/bin/env bash
# Does an AdaBits warm start improve the searched policy? Searches the adabits space
# (configs/search_space/adabits.json) twice under the same budget: from the FP32 checkpoint and from an
# AdaBits checkpoint (autoqnn search --checkpoint ada.pt). Each derived policy is then (a) finetuned from
# the FP32 checkpoint for FT_EPOCHS and evaluated, and (b) evaluated directly on the AdaBits model
# (no retraining). Writes a TSV.
# Environment: BIN, MODEL, FP, ADA (required), DEVICE, SEED, AVG_BITS (5), SEARCH_EPOCHS (2), WARMUP (1),
#              FT_EPOCHS (3), OUT_DIR (runs/adabits_ws_$MODEL), TSV ($OUT_DIR/warmstart.tsv)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/autoqnn}; MODEL=${MODEL:-lenet5}; FP=${FP:-runs/${MODEL}_fp32.pt}; DEVICE=${DEVICE:-cpu}
SEED=${SEED:-1}; AVG_BITS=${AVG_BITS:-5}; SEARCH_EPOCHS=${SEARCH_EPOCHS:-2}; WARMUP=${WARMUP:-1}
FT_EPOCHS=${FT_EPOCHS:-3}; OUT_DIR=${OUT_DIR:-runs/adabits_ws_$MODEL}; TSV=${TSV:-$OUT_DIR/warmstart.tsv}
[ -n "${ADA:-}" ] && [ -f "$ADA" ] || { echo "adabits_warmstart: set ADA to an AdaBits checkpoint" >&2; exit 1; }
[ -x "$BIN" ] || { echo "adabits_warmstart: $BIN is not an executable" >&2; exit 1; }
mkdir -p "$OUT_DIR"
C="--model $MODEL --device $DEVICE --seed $SEED"
j() { python3 -c 'import json,sys; print("%.2f" % (100 * json.loads(sys.stdin.read())["top1"]))'; }
TMP=$(mktemp "$OUT_DIR/.ws.XXXXXX"); trap 'rm -f "$TMP"' EXIT
printf 'start\tavg_weight_bits\tfinetuned_top1\ton_adabits_top1\n' >"$TMP"
for start in fp ada; do
  ck=$FP; [ $start = ada ] && ck=$ADA
  p=$OUT_DIR/p_$start.json
  "$BIN" search $C --checkpoint "$ck" --space configs/search_space/adabits.json --avg-bits "$AVG_BITS" \
    --epochs "$SEARCH_EPOCHS" --warmup "$WARMUP" --out "$p" >&2
  bits=$(python3 -c "import json; print('%.3f' % json.load(open('$p'))['totals']['avg_weight_bits'])")
  "$BIN" finetune $C --checkpoint "$FP" --policy "$p" --epochs "$FT_EPOCHS" --out "$OUT_DIR/q_$start.pt" >&2
  ft=$("$BIN" eval $C --checkpoint "$OUT_DIR/q_$start.pt" --json | j)
  on=$("$BIN" eval $C --checkpoint "$ADA" --policy "$p" --json | j)
  printf '%s\t%s\t%s\t%s\n' "$start" "$bits" "$ft" "$on" >>"$TMP"
done
mv "$TMP" "$TSV"; trap - EXIT; cat "$TSV"
