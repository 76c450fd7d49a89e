#!/usr/bin/env bash
# AdaBits study: ONE switchable model per bit list vs individually trained (QAT) models, evaluated at every
# bitwidth, written as a TSV.
#
#   for LIST in $LISTS (default "8,6,5,4 4,3,2"):
#     autoqnn train --adabits LIST --checkpoint FP -> ada_<LIST>.pt; autoqnn eval --bits B for B in LIST
#   for every bitwidth B in the union of the lists:
#     autoqnn train --adabits B --checkpoint FP    -> single_<B>.pt (the same quantizers, calibration and
#     recipe with one bitwidth: plain quantization-aware finetuning); autoqnn eval --bits B
#
# Environment (all optional):
#   BIN          autoqnn binary                (default: build/autoqnn)
#   MODEL        zoo model                     (default: lenet5)
#   FP           FP32 checkpoint               (default: runs/${MODEL}_fp32.pt)
#   DATASET      dataset                       (default: fashion-mnist)
#   DEVICE       --device (cpu | cuda)         (default: cpu)
#   EPOCHS       epochs of every run           (default: 4)
#   LR           peak learning rate            (default: 0.01, cosine)
#   TRAIN_LIMIT  training images (0 = all)     (default: 0)
#   SEED         --seed                        (default: 1)
#   LISTS        bit lists                     (default: "8,6,5,4 4,3,2")
#   ARGS         extra training flags          (e.g. "--crop-padding 2 --hflip" for ResNet-20)
#   OUT_DIR      work directory                (default: runs/adabits_${MODEL})
#   TSV          result table                  (default: $OUT_DIR/adabits.tsv)
# A checkpoint already in OUT_DIR is not trained again (delete it to redo it). Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-build/autoqnn}
MODEL=${MODEL:-lenet5}
FP=${FP:-runs/${MODEL}_fp32.pt}
DATASET=${DATASET:-fashion-mnist}
DEVICE=${DEVICE:-cpu}
EPOCHS=${EPOCHS:-4}
LR=${LR:-0.01}
TRAIN_LIMIT=${TRAIN_LIMIT:-0}
SEED=${SEED:-1}
LISTS=${LISTS:-"8,6,5,4 4,3,2"}
ARGS=${ARGS:-}
OUT_DIR=${OUT_DIR:-runs/adabits_${MODEL}}
TSV=${TSV:-$OUT_DIR/adabits.tsv}

[ -x "$BIN" ] || { echo "adabits_study: $BIN is not an executable (set BIN=...)" >&2; exit 1; }
[ -f "$FP" ] || { echo "adabits_study: FP32 checkpoint $FP missing (autoqnn train --model $MODEL --out $FP)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "adabits_study: python3 is needed to read eval's JSON" >&2; exit 1; }
mkdir -p "$OUT_DIR"

COMMON="--model $MODEL --dataset $DATASET --device $DEVICE --seed $SEED"
TRAIN="$COMMON --train-limit $TRAIN_LIMIT --epochs $EPOCHS --lr $LR $ARGS"

train() {  # LIST OUT
  if [ -f "$2" ]; then echo "adabits_study: $2 exists, not retrained" >&2; return; fi
  echo "adabits_study: training --adabits $1 -> $2" >&2
  "$BIN" train $TRAIN --adabits "$1" --checkpoint "$FP" --out "$2" >&2
}
top1() {  # CKPT BITS -> top-1 in percent
  "$BIN" eval $COMMON --checkpoint "$1" --bits "$2" --json |
    python3 -c 'import json,sys; print("%.2f" % (100 * json.loads(sys.stdin.read())["top1"]))'
}

FP_TOP1=$("$BIN" eval $COMMON --checkpoint "$FP" --json |
          python3 -c 'import json,sys; print("%.2f" % (100 * json.loads(sys.stdin.read())["top1"]))')
ALL_BITS=$(for l in $LISTS; do echo "$l" | tr ',' '\n'; done | sort -rn | uniq)
for b in $ALL_BITS; do train "$b" "$OUT_DIR/single_$b.pt"; done
for l in $LISTS; do train "$l" "$OUT_DIR/ada_${l//,/-}.pt"; done

TMP=$(mktemp "$OUT_DIR/.adabits.tsv.XXXXXX")
trap 'rm -f "$TMP"' EXIT
printf 'model\tfp32_top1\tbits\tindividual_top1\tadabits_list\tadabits_top1\tdelta\tepochs\ttrain_limit\tseed\n' >"$TMP"
for l in $LISTS; do
  for b in ${l//,/ }; do
    ind=$(top1 "$OUT_DIR/single_$b.pt" "$b")
    ada=$(top1 "$OUT_DIR/ada_${l//,/-}.pt" "$b")
    d=$(python3 -c "print('%+.2f' % ($ada - $ind))")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$MODEL" "$FP_TOP1" "$b" "$ind" "$l" "$ada" "$d" "$EPOCHS" \
      "$TRAIN_LIMIT" "$SEED" >>"$TMP"
    echo "adabits_study: $MODEL $b bits: individual $ind, adabits[$l] $ada ($d)" >&2
  done
done
mv "$TMP" "$TSV"
trap - EXIT
cat "$TSV"
