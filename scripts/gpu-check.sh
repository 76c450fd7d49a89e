#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA LibTorch 2.x (the one inside Python's torch) and nvcc, but none
# of the Debian -dev packages. Needs third_party/gpu-deps/ made by scripts/gpu-deps.sh on a Debian machine
# (carry it along). Sized for a 15-minute device lease: one call, phases with their own time limits, every
# phase's log kept under $LOG_DIR (default $OUT, else build-gpu/logs) and one summary line per phase.
#   1 build     Release into ${BUILD_DIR:-build-gpu} with the fused CUDA kernels; only the targets used
#               below; keeps going past errors so one run shows all of them (probes first: whether the
#               wheel's c10d Gloo / NCCL headers compile here)
#   2 tests     the whole ctest suite (CUDA tests enabled: a GPU is visible)
#   3 bench     bench_gpu (kernels vs copy bandwidth), bench_search on cuda (search step vs FP32 step)
#   4 cli       --device cuda end to end: TorchScript import, data parallel over NCCL (1 rank) and over
#               Gloo (2 ranks on one GPU), ptq / analyze CPU vs GPU, a timed short ResNet-20 search + finetune
# Usage: scripts/gpu-check.sh [--no-tests] [--no-bench] [--no-cli]
# Rehearsal on a CPU machine (the commands and flags, not the GPU): REHEARSE=1 BUILD_DIR=build DEV=cpu
#   scripts/gpu-check.sh --no-tests --no-bench   (no probes, no build: uses BUILD_DIR as it is)
set -uo pipefail
cd "$(dirname "$0")/.."
TESTS=1; BENCH=1; CLI=1
for a in "$@"; do
  case "$a" in
    --no-tests) TESTS=0 ;;
    --no-bench) BENCH=0 ;;
    --no-cli) CLI=0 ;;
    *) echo "gpu-check: unknown argument '$a' (use --no-tests, --no-bench, --no-cli)" >&2; exit 2 ;;
  esac
done
REHEARSE=${REHEARSE:-0}
DEV=${DEV:-cuda}
DEPS=${DEPS:-third_party/gpu-deps}
[ "$REHEARSE" = 1 ] && mkdir -p "$DEPS/lib"
DEPS_ARG=$DEPS
DEPS=$(cd "$DEPS" 2>/dev/null && pwd) || { echo "gpu-check: ${DEPS_ARG} missing: run scripts/gpu-deps.sh on a Debian machine and carry it" >&2; exit 2; }
BUILD_DIR=${BUILD_DIR:-build-gpu}
LOG_DIR=${LOG_DIR:-${OUT:-$BUILD_DIR/logs}}
mkdir -p "$LOG_DIR"
SUMMARY=$LOG_DIR/summary.txt
: > "$SUMMARY"
T0=$(date +%s)
DEADLINE=${DEADLINE:-540}   # seconds from the start; a step that would end past it is skipped (and said so)
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
note() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$SUMMARY" >&2; }
# The bundle's shared libraries (GLPK and what it needs, Google Benchmark) for the tools and the tests.
export LD_LIBRARY_PATH="$DEPS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

PY=${PYTHON:-python3}
export AUTOQNN_PYTHON=$(command -v "$PY")   # tests make TorchScript files with this Python's torch
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ "$REHEARSE" != 1 ]; then
{
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  nproc
  $PY -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch.compiled_with_cxx11_abi())'
  "$NVCC" --version | tail -1
  cmake --version | head -1
} > "$LOG_DIR/machine.txt" 2>&1
note "machine: $(head -2 "$LOG_DIR/machine.txt" | tail -1 | tr -d '\n'); $(grep '^torch' "$LOG_DIR/machine.txt")"
TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')
TORCH_DIR=$($PY -c 'import torch,os;print(os.path.dirname(torch.__file__))')
ABI=$($PY -c 'import torch;print(int(torch.compiled_with_cxx11_abi()))')

# The data set where the loader looks by default (Debian's dataset-fashion-mnist path).
FM=/usr/share/datasets/fashion-mnist
if [ ! -f "$FM/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$FM" && cp "$DEPS"/data/fashion-mnist/*.gz "$FM/"
fi

# ---- 1: probes + build ----
# c10d backends: a wheel ships c10d's headers but maybe not Gloo's; NCCL's header lives in the nvidia-nccl
# wheel. Compile each backend's header once here; distributed.cpp leaves out a backend that does not.
CUDA_INC=$(dirname "$(dirname "$NVCC")")/include
PROBE_FLAGS=(-std=c++17 -fsyntax-only -x c++ -D_GLIBCXX_USE_CXX11_ABI=$ABI -I"$TORCH_DIR/include"
  -I"$TORCH_DIR/include/torch/csrc/api/include" -I"$CUDA_INC")
EXTRA_CXX=""
if echo '#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>' | g++ "${PROBE_FLAGS[@]}" - > "$LOG_DIR/probe_gloo.log" 2>&1; then
  note "probe: c10d Gloo header compiles"
else
  EXTRA_CXX+=" -DAUTOQNN_NO_GLOO=1"; note "probe: c10d Gloo header does NOT compile (see probe_gloo.log): built without Gloo"
fi
NCCL_INC=$($PY -c 'import nvidia.nccl as m,os;print(os.path.join(list(m.__path__)[0],"include"))' 2>/dev/null || true)
if [ -n "$NCCL_INC" ] && [ -f "$NCCL_INC/nccl.h" ] && echo '#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>' | g++ "${PROBE_FLAGS[@]}" -I"$NCCL_INC" - >> "$LOG_DIR/probe_gloo.log" 2>&1; then
  EXTRA_CXX+=" -isystem $NCCL_INC"; note "probe: c10d NCCL header compiles with $NCCL_INC/nccl.h"
else
  EXTRA_CXX+=" -DAUTOQNN_NO_NCCL=1"; note "probe: c10d NCCL header missing or does not compile: built without NCCL"
fi

GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
t0=$(date +%s)
TARGETS=(autoqnn)
[ "$TESTS" = 1 ] && TARGETS+=(autoqnn_tests)
[ "$BENCH" = 1 ] && TARGETS+=(bench_gpu bench_search)
{
  cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DAUTOQNN_DEPS_DIR="$DEPS" -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
    -DCMAKE_CXX_FLAGS="$EXTRA_CXX" &&
  if [ ${#GEN[@]} -gt 0 ]; then
    timeout "${BUILD_LIMIT:-330}" cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${TARGETS[@]}" -- -k 0
  else
    timeout "${BUILD_LIMIT:-330}" cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${TARGETS[@]}" -- -k
  fi
} > "$LOG_DIR/build.log" 2>&1
rc=$?
note "build: rc=$rc in $(( $(date +%s) - t0 )) s; $(grep -c 'error:' "$LOG_DIR/build.log") compiler error lines (build.log)"
fi
[ -x "$BUILD_DIR/autoqnn" ] || { note "no autoqnn binary: stopping"; exit 1; }
AQ=$BUILD_DIR/autoqnn

# ---- 2: the test suite (the CUDA tests first: they are what only this machine can run) ----
if [ "$TESTS" = 1 ] && [ -x "$BUILD_DIR/tests/autoqnn_tests" ]; then
  timeout 120 "$BUILD_DIR/tests/autoqnn_tests" --gtest_filter='Cuda.*:Pow2Common.Cuda*' > "$LOG_DIR/tests_cuda.log" 2>&1
  note "Cuda.* tests: rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$LOG_DIR/tests_cuda.log" | tr '\n' ' ')"
  lim=$(( $(left) - ${RESERVE:-200} )); [ "$lim" -gt "${TEST_LIMIT:-180}" ] && lim=${TEST_LIMIT:-180}
  if [ "$lim" -gt 30 ]; then
    t0=$(date +%s)
    (cd "$BUILD_DIR" && timeout "$lim" ctest --output-on-failure -j"${CTEST_JOBS:-16}" --timeout 120) > "$LOG_DIR/tests.log" 2>&1
    note "tests: rc=$? in $(( $(date +%s) - t0 )) s (limit $lim s): $(grep -E 'tests passed|tests failed' "$LOG_DIR/tests.log" | tail -1)"
    grep -E '^ *[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception|Not Run)\)' "$LOG_DIR/tests.log" | head -30 >> "$SUMMARY"
  else
    note "tests: skipped (only $(left) s left)"
  fi
fi

# ---- 3: the CLI on cuda ----
if [ "$CLI" = 1 ]; then
  DEV_N=$DEV; [ "$DEV" = cuda ] && DEV_N=cuda:0
  W=$BUILD_DIR/gpu_cli; rm -rf "$W"; mkdir -p "$W"
  D=(--dataset fashion-mnist --train-limit 4096 --test-limit 2000 --seed 1)
  step() {  # step NAME LIMIT_S command...: one line in the summary with the rc, the time and the last line
    local name=$1 lim=$2; shift 2; local t=$(date +%s)
    if [ "$(left)" -lt "$lim" ]; then note "cli $name: skipped ($(left) s left, needs up to $lim s)"; return 99; fi
    echo "== $name: $*" >> "$LOG_DIR/cli.log"
    timeout "$lim" "$@" >> "$LOG_DIR/cli.log" 2>&1; local r=$?
    note "cli $name: rc=$r in $(( $(date +%s) - t )) s: $(tail -1 "$LOG_DIR/cli.log" | cut -c1-200)"
    return $r
  }
  step train_cuda 60 "$AQ" train --model lenet5 "${D[@]}" --epochs 1 --lr 0.05 --device $DEV --out "$W/fp.pt"
  step eval_cpu 30 "$AQ" eval --model lenet5 "${D[@]}" --checkpoint "$W/fp.pt" --device cpu
  # TorchScript import on the GPU: a scripted LeNet-5 made by this machine's torch.
  cat > "$W/make_lenet.py" <<'EOF'
import sys, torch, torch.nn as nn, torch.nn.functional as F
class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2); self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120); self.fc2 = nn.Linear(120, 84); self.fc3 = nn.Linear(84, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2); x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1); return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
torch.manual_seed(0); torch.jit.script(LeNet()).save(sys.argv[1])
EOF
  $PY "$W/make_lenet.py" "$W/lenet.pt" >> "$LOG_DIR/cli.log" 2>&1
  step ts_train_cuda 60 "$AQ" train --model "$W/lenet.pt" "${D[@]}" --epochs 1 --lr 0.05 --device $DEV --out "$W/ts_fp.pt"
  step ts_search_cuda 90 "$AQ" search --model "$W/lenet.pt" --checkpoint "$W/ts_fp.pt" "${D[@]}" --avg-bits 2 --warmup 0 \
    --epochs 1 --device $DEV --out "$W/ts_policy.json"
  step ts_finetune_cuda 60 "$AQ" finetune --model "$W/lenet.pt" --checkpoint "$W/ts_fp.pt" --policy "$W/ts_policy.json" \
    "${D[@]}" --epochs 1 --device $DEV --out "$W/ts_q.pt"
  # Data parallel: NCCL with one rank (two ranks on one GPU are refused by NCCL; a named backend makes the
  # group even for one process), Gloo with two ranks on cuda:0.
  step nccl_1rank 60 bash scripts/launch.sh -n 1 -- "$AQ" train --model lenet5 "${D[@]}" --epochs 1 --lr 0.05 \
    --device $DEV_N --dist-backend nccl --out "$W/nccl.pt"
  step gloo_2rank_cuda 90 bash scripts/launch.sh -n 2 -- "$AQ" train --model lenet5 "${D[@]}" --epochs 1 --lr 0.05 \
    --device $DEV_N --dist-backend gloo --out "$W/gloo.pt"
  # ptq / analyze: the same command on the CPU and the GPU (statistics reduced in float64 on the CPU).
  for dev in cpu $DEV; do
    step "ptq_$dev" 60 "$AQ" ptq --model lenet5 "${D[@]}" --checkpoint "$W/fp.pt" --weight uniform:4:per_channel \
      --act uniform:4:asym --aciq laplace --bias-correction mean --device $dev --out "$W/ptq_$dev.pt" --policy-out "$W/ptq_$dev.json"
    step "ptq_eval_$dev" 30 "$AQ" eval --model lenet5 "${D[@]}" --checkpoint "$W/ptq_$dev.pt" --device cpu
    step "analyze_$dev" 60 "$AQ" analyze --model lenet5 "${D[@]}" --checkpoint "$W/fp.pt" --no-accuracy --device $dev \
      --out "$W/analyze_$dev.csv"
  done
  $PY - "$W/analyze_cpu.csv" "$W/analyze_$DEV.csv" >> "$SUMMARY" 2>&1 <<'EOF'
import csv, sys
try:
    a, b = (list(csv.reader(open(p))) for p in sys.argv[1:3])
    worst, n, rel = 0.0, 0, 0.0
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            try: fx, fy = float(x), float(y)
            except ValueError: continue
            n += 1; worst = max(worst, abs(fx - fy)); rel = max(rel, abs(fx - fy) / max(abs(fx), 1e-12))
    print(f"analyze cpu vs cuda: {len(a)} vs {len(b)} rows, {n} numbers, max |diff| {worst:.4g}, max rel {rel:.4g}")
except Exception as e:
    print("analyze cpu vs cuda: not compared:", e)
EOF
fi

# ---- 4: benchmarks ----
if [ "$BENCH" = 1 ] && [ "$(left)" -gt 150 ]; then
  {
    echo "== bench_gpu (quantizer forward+backward vs device copy bandwidth)"
    [ -x "$BUILD_DIR/bench/bench_gpu" ] && timeout 90 "$BUILD_DIR/bench/bench_gpu" "${BENCH_MELEMS:-16}" 30
    echo "== bench_search on cuda (search step vs FP32 step, ResNet-20 batch 128)"
    [ -x "$BUILD_DIR/bench/bench_search" ] && AUTOQNN_BENCH_DEVICE=cuda timeout 90 "$BUILD_DIR/bench/bench_search" \
      --benchmark_min_time=1 --benchmark_filter='Fp32TrainStep|SearchStep/hard$|SearchStep/soft|SearchWeightStep/hard'
  } > "$LOG_DIR/bench.log" 2>&1
  note "bench: rc=$? (bench.log)"
fi

# ---- 5: ResNet-20 on cuda: a timed short search + finetune (one budget) to extrapolate the Pareto run ----
if [ "$CLI" = 1 ]; then
  # ResNet-20: a timed short search + finetune (one budget) to extrapolate the full Pareto run.
  step r20_train 90 "$AQ" train --model resnet20 --dataset fashion-mnist --train-limit 10000 --test-limit 2000 --seed 1 \
    --epochs 1 --lr 0.1 --device $DEV --out "$W/r20.pt"
  step r20_search 90 "$AQ" search --model resnet20 --checkpoint "$W/r20.pt" --dataset fashion-mnist --train-limit 10000 \
    --test-limit 2000 --seed 1 --avg-bits 2 --warmup 0 --epochs 1 --device $DEV --out "$W/r20_policy.json"
  step r20_finetune 90 "$AQ" finetune --model resnet20 --checkpoint "$W/r20.pt" --policy "$W/r20_policy.json" \
    --dataset fashion-mnist --train-limit 10000 --test-limit 2000 --seed 1 --epochs 1 --device $DEV --out "$W/r20_q.pt"
fi
note "done in $(( $(date +%s) - T0 )) s"
