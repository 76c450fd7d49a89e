#!/usr/bin/env bash
# Installs the Debian packages AutoQNN-C++ needs; idempotent: does nothing when all are present,
# runs `apt-get update` only when something is missing.
set -euo pipefail
PKGS=(build-essential cmake libtorch-dev nlohmann-json3-dev libboost-program-options-dev
      libgtest-dev zlib1g-dev libbenchmark-dev dataset-fashion-mnist
      libglpk-dev                                       # the exact allocator of --method ilp
      libgloo-dev                                       # Gloo headers for c10d's ProcessGroupGloo
      libonnx-dev libprotobuf-dev protobuf-compiler     # export --format onnx
      libpng-dev libjpeg-dev)                           # --dataset folder:DIR (PNG / JPEG)
PKGS+=("$@")   # callers may add optional packages (e.g. gnuplot-nox)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# ONNX Runtime for Node (export --format onnx --verify, the ONNX tests): scripts/install-ort.sh, idempotent.
ort() { command -v node >/dev/null && command -v npm >/dev/null && bash "$(dirname "$0")/install-ort.sh" ||
        echo "install-deps: node / npm missing: ONNX Runtime not installed (ONNX tests will skip)" >&2; }
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present" >&2
  ort
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
ort

