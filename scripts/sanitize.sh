#!/usr/bin/env bash
# Builds the project and its test suite with AddressSanitizer + UndefinedBehaviorSanitizer in
# ${SAN_BUILD_DIR:-build-asan} (a build folder of its own; the first build takes as long as a full build,
# several times that on 2 cores) and runs the suite under them. LibTorch itself is not instrumented.
#   scripts/sanitize.sh                      the whole suite (ctest)
#   scripts/sanitize.sh 'BadInput*:Spec*'    only the tests matching a --gtest_filter
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${SAN_BUILD_DIR:-build-asan}
JOBS=${JOBS:-2}
FILTER=${1:-}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 -DAUTOQNN_SANITIZE=ON -DAUTOQNN_BUILD_BENCH=OFF \
    -DAUTOQNN_BUILD_EXAMPLES=OFF >/dev/null
fi
cmake --build "$BUILD" -j"$JOBS" --target autoqnn autoqnn_tests
# leaks: LibTorch keeps process-lifetime allocations (thread pools, registries); ODR: its static copies
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ -n "$FILTER" ]; then
  "$BUILD/tests/autoqnn_tests" --gtest_filter="$FILTER"
else
  (cd "$BUILD" && ctest --output-on-failure -j"${CTEST_JOBS:-1}" --timeout 1800)
fi
