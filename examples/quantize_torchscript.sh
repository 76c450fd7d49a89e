#!/bin/sh
# The whole journey for a user's own TorchScript model (docs/models.md): train it a little in FP32, search a
# 4-bit mixed-precision policy (space lowbit: the first and last layer may go below 8 bits too), convert,
# finetune, export back to TorchScript and run it in plain Python.
# Usage: examples/quantize_torchscript.sh [AUTOQNN] [DATASET]   (defaults: build/autoqnn, fashion-mnist)
set -eu
AUTOQNN=${1:-build/autoqnn}
DATA=${2:-fashion-mnist}
W=$(mktemp -d)
/usr/bin/python3 "$(dirname "$0")/torchscript_model.py" "$W/mynet.pt"
COMMON="--model $W/mynet.pt --dataset $DATA --seed 1"
"$AUTOQNN" layers $COMMON
"$AUTOQNN" train $COMMON --epochs 2 --lr 0.05 --out "$W/fp.pt"
"$AUTOQNN" search $COMMON --checkpoint "$W/fp.pt" --method qss --space lowbit --avg-bits 4 --epochs 2 --warmup 1 --out "$W/p.json"
"$AUTOQNN" convert $COMMON --checkpoint "$W/fp.pt" --policy "$W/p.json" --out "$W/q.pt"
"$AUTOQNN" finetune $COMMON --checkpoint "$W/q.pt" --epochs 2 --out "$W/ft.pt"
"$AUTOQNN" eval $COMMON --checkpoint "$W/ft.pt"
"$AUTOQNN" export $COMMON --checkpoint "$W/ft.pt" --format torchscript --out "$W/mynet_q.pt"
/usr/bin/python3 -c "import torch, sys; m = torch.jit.load(sys.argv[1]); print('plain torch output shape', tuple(m(torch.zeros(2, 1, 28, 28)).shape))" "$W/mynet_q.pt"
echo "files in $W"
