#!/usr/bin/env bash
# The GPU check (issue 10): on a machine with a CUDA LibTorch 2.x (the one inside Python's torch) and
# nvcc, but none of the Debian -dev packages. Needs third_party/gpu-deps/ made by scripts/gpu-deps.sh on a
# Debian machine (carry it along). Builds Release into ${BUILD_DIR:-build-gpu} with the fused CUDA kernels,
# runs the whole ctest suite (CUDA tests enabled: a GPU is visible) and the GPU benchmarks.
# Usage: scripts/gpu-check.sh [--no-tests] [--no-bench]   (logs also go to $LOG_DIR when set)
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=1; BENCH=1
for a in "$@"; do
  case "$a" in
    --no-tests) TESTS=0 ;;
    --no-bench) BENCH=0 ;;
    *) echo "gpu-check: unknown argument '$a' (use --no-tests, --no-bench)" >&2; exit 2 ;;
  esac
done
DEPS=${DEPS:-third_party/gpu-deps}
BUILD_DIR=${BUILD_DIR:-build-gpu}
[ -f "$DEPS/lib/libboost_program_options.a" ] || { echo "gpu-check: $DEPS missing: run scripts/gpu-deps.sh on a Debian machine and carry it" >&2; exit 2; }

echo "== machine" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
PY=${PYTHON:-python3}
TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')
$PY -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch.compiled_with_cxx11_abi())' >&2
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$NVCC" --version | tail -1 >&2
cmake --version | head -1 >&2

# The data set where the loader looks by default (Debian's dataset-fashion-mnist path).
FM=/usr/share/datasets/fashion-mnist
if [ ! -f "$FM/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$FM" && cp "$DEPS"/data/fashion-mnist/*.gz "$FM/"
fi

GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
t0=$(date +%s)
cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DAUTOQNN_DEPS_DIR="$DEPS" -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2
echo "gpu-check: build took $(( $(date +%s) - t0 )) s" >&2

if [ "$TESTS" = 1 ]; then
  t0=$(date +%s)
  (cd "$BUILD_DIR" && ctest --output-on-failure -j"${CTEST_JOBS:-8}" --timeout 600) >&2
  echo "gpu-check: tests took $(( $(date +%s) - t0 )) s" >&2
fi
if [ "$BENCH" = 1 ] && [ -x "$BUILD_DIR/bench/bench_gpu" ]; then
  echo "== bench_gpu (quantizer forward+backward vs device copy bandwidth)" >&2
  "$BUILD_DIR/bench/bench_gpu" "${BENCH_MELEMS:-16}" 30
  echo "== bench_search on cuda (search step vs FP32 step, ResNet-20 batch 128)" >&2
  AUTOQNN_BENCH_DEVICE=cuda "$BUILD_DIR/bench/bench_search" --benchmark_min_time=1 \
    --benchmark_filter='Fp32TrainStep|SearchStep/hard$|SearchStep/soft|SearchWeightStep/hard'
fi
