#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) in ${FUZZ_BUILD_DIR:-build-fuzz} and runs each
# for MINUTES minutes (default 10) on its seed corpus (fuzz/corpus/<target>, copied to a work corpus so the
# committed seeds stay small); prints execs and crashes per target. Not part of CI (too long).
#   scripts/fuzz.sh [MINUTES] [TARGET...]     targets: policy search_space spec checkpoint safetensors archive
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
shift || true
TARGETS=${*:-policy search_space spec checkpoint safetensors archive}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
WORK=${FUZZ_WORK_DIR:-$BUILD/fuzz-work}
JOBS=${JOBS:-2}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUTOQNN_FUZZ=ON \
    -DAUTOQNN_BUILD_TESTS=OFF -DAUTOQNN_BUILD_BENCH=OFF -DAUTOQNN_BUILD_EXAMPLES=OFF >/dev/null
fi
for t in $TARGETS; do cmake --build "$BUILD" -j"$JOBS" --target "fuzz_$t" >/dev/null; done

mkdir -p "$WORK"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
printf '%-14s %8s %12s %10s %8s\n' target minutes execs exec/s crashes
status=0
for t in $TARGETS; do
  bin="$BUILD/fuzz/fuzz_$t"
  corpus="$WORK/corpus_$t"
  artifacts="$WORK/crashes_$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log="$WORK/fuzz_$t.log"
  # -rss_limit_mb: LibTorch alone takes a few hundred MB; -timeout: a hung input is a finding too
  set +e
  "$bin" "$corpus" -max_total_time=$((MINUTES * 60)) -rss_limit_mb=4096 -timeout=20 -max_len=65536 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(find "$artifacts" -type f | wc -l)
  printf '%-14s %8s %12s %10s %8s\n' "$t" "$MINUTES" "${execs:-?}" "${rate:-?}" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "  fuzz_$t exited $rc; log $log, inputs in $artifacts" >&2
  fi
done
exit $status
