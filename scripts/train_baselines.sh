#!/usr/bin/env bash
# Reproduces the FP32 baselines every quantization result starts from (docs/training.md):
#   runs/lenet5_fp32.pt   LeNet-5   Fashion-MNIST
#   runs/resnet20_fp32.pt ResNet-20 Fashion-MNIST
# Usage: scripts/train_baselines.sh [lenet5|resnet20|all]   (AQ=path/to/autoqnn to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
if [ -z "${AQ:-}" ]; then bash scripts/install-deps.sh; bash scripts/build.sh; AQ=build/autoqnn; fi
mkdir -p runs
if [ "$which" = lenet5 ] || [ "$which" = all ]; then
  [ -f runs/lenet5_fp32.pt ] || /usr/bin/time -f "lenet5 wall %e s" \
    "$AQ" train --model lenet5 --epochs 10 --lr 0.05 --batch-size 128 --seed 1 --out runs/lenet5_fp32.pt
  "$AQ" eval --model lenet5 --checkpoint runs/lenet5_fp32.pt --json
fi
if [ "$which" = resnet20 ] || [ "$which" = all ]; then
  [ -f runs/resnet20_fp32.pt ] || /usr/bin/time -f "resnet20 wall %e s" \
    "$AQ" train --model resnet20 --epochs 30 --lr 0.1 --batch-size 128 --crop-padding 2 --hflip --seed 1 \
      --out runs/resnet20_fp32.pt
  "$AQ" eval --model resnet20 --checkpoint runs/resnet20_fp32.pt --json
fi
