#!/usr/bin/env bash
# Installs the Debian packages AutoQNN-C++ needs; idempotent: does nothing when all are present,
# runs `apt-get update` only when something is missing.
set -euo pipefail
PKGS=(build-essential cmake libtorch-dev nlohmann-json3-dev libboost-program-options-dev
      libgtest-dev zlib1g-dev libbenchmark-dev dataset-fashion-mnist
      libgloo-dev)  # libgloo-dev: the Gloo headers c10d's ProcessGroupGloo needs (src/autoqnn/distributed.cpp)
PKGS+=("$@")   # callers may add optional packages (e.g. gnuplot-nox)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
