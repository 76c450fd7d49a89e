#!/usr/bin/env bash
# Installs ONNX Runtime for Node (scripts/ort/node_modules, from package-lock.json) used by
# `autoqnn export --format onnx --verify` and the ONNX tests. Idempotent: does nothing when the installed
# version matches the lock. ONNXRUNTIME_NODE_INSTALL=skip: the CPU library ships inside the package; the
# default postinstall would download a GPU provider (and fails offline).
set -euo pipefail
cd "$(dirname "$0")/ort"
want=$(node -p "require('./package-lock.json').packages['node_modules/onnxruntime-node'].version")
have=$(node -p "try { require('./node_modules/onnxruntime-node/package.json').version } catch (e) { '' }" 2>/dev/null || true)
if [ "$want" = "$have" ]; then
  echo "install-ort: onnxruntime-node $have present" >&2
  exit 0
fi
echo "install-ort: installing onnxruntime-node $want (npm ci)" >&2
ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
