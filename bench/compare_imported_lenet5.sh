#!/bin/sh
# The zoo's LeNet-5 (--model lenet5) against the same network written in Python and imported from TorchScript
# (tests/make_torchscript_models.py lenet5): both search (QSS) from the same FP32 checkpoint with the same seed,
# then convert + finetune + eval. Prints both policies' layer specs and the accuracies (docs/models.md).
# Usage: bench/compare_imported_lenet5.sh [AUTOQNN] [DATASET] [TRAIN_LIMIT]
set -eu
AUTOQNN=${1:-build/autoqnn}
DATA=${2:-fashion-mnist}
LIMIT=${3:-6000}
W=$(mktemp -d)
/usr/bin/python3 "$(dirname "$0")/../tests/make_torchscript_models.py" "$W" lenet5 > /dev/null
D="--dataset $DATA --train-limit $LIMIT --test-limit 2000 --seed 1 --threads 2"
"$AUTOQNN" train --model lenet5 $D --epochs 2 --out "$W/fp.pt" 2> "$W/train.log"
for m in lenet5 "$W/lenet5.pt"; do
  tag=$(basename "$m" .pt)_$( [ "$m" = lenet5 ] && echo zoo || echo imported )
  "$AUTOQNN" search --method qss --model "$m" $D --checkpoint "$W/fp.pt" --avg-bits 3 --epochs 2 --warmup 1 \
    --out "$W/$tag.json" 2> "$W/$tag.search.log"
  "$AUTOQNN" convert --model "$m" $D --checkpoint "$W/fp.pt" --policy "$W/$tag.json" --out "$W/$tag.q.pt" 2> /dev/null > /dev/null
  "$AUTOQNN" finetune --model "$m" $D --checkpoint "$W/$tag.q.pt" --epochs 1 --out "$W/$tag.ft.pt" 2> /dev/null
  echo "== $tag"
  /usr/bin/python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(' '.join(k+'='+v['weight'] for k,v in p['layers'].items()), 'avg_bits=%.4f' % p['totals']['avg_weight_bits'])" "$W/$tag.json"
  "$AUTOQNN" eval --model "$m" $D --checkpoint "$W/$tag.ft.pt" --json 2> /dev/null
done
echo "files in $W"
