#!/usr/bin/env bash
# Installs missing dependencies, builds (Release), runs the unit tests with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
bash scripts/build.sh
cd "$BUILD_DIR"
ctest --output-on-failure -j"${CTEST_JOBS:-1}" --timeout 900
