#!/usr/bin/env bash
# Packs what a CUDA machine without Debian's packages lacks into third_party/gpu-deps/ (git-ignored), so
# the folder can travel with the tree to a GPU machine whose only C++ dependency is a CUDA LibTorch
# (e.g. the one inside Python's torch). Taken from this machine's installed Debian packages (installed
# first by install-deps.sh):
#   include/{nlohmann,boost (the closure program_options needs),benchmark,zlib.h,zconf.h}
#   lib/{libboost_program_options.a,libz.a,libbenchmark.so*, libglpk.so* and the libraries it needs}
#   googletest/   GoogleTest sources (Debian ships them in /usr/src/googletest), built there by CMake
#   data/fashion-mnist/  the gzipped IDX files
# CMake uses the folder with -DAUTOQNN_DEPS_DIR=third_party/gpu-deps (see CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
OUT=${1:-third_party/gpu-deps}
tmp="$OUT.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp/include" "$tmp/lib" "$tmp/data"
trap 'rm -rf "$tmp"' EXIT

cp -r /usr/include/nlohmann "$tmp/include/"
# Only the Boost headers program_options pulls in (~3 MB instead of ~150 MB).
echo '#include <boost/program_options.hpp>' | g++ -std=c++17 -x c++ -M - | tr ' \\' '\n\n' \
  | grep '^/usr/include/boost/' | sort -u | while read -r h; do
      mkdir -p "$tmp/include/$(dirname "${h#/usr/include/}")"; cp "$h" "$tmp/include/${h#/usr/include/}"; done
ML=/usr/lib/$(gcc -print-multiarch)
cp "$ML/libboost_program_options.a" "$ML/libz.a" "$tmp/lib/"
cp /usr/include/zlib.h /usr/include/zconf.h "$tmp/include/"
cp -r /usr/include/benchmark "$tmp/include/"
cp -P "$ML"/libbenchmark.so* "$tmp/lib/"
# GLPK (--method ilp): Debian's shared library and what it needs (no static libltdl in Debian).
cp /usr/include/glpk.h "$tmp/include/"
for l in libglpk.so libglpk.so.40 libltdl.so.7 libgmp.so.10 libamd.so.2 libcolamd.so.2 libsuitesparseconfig.so.5; do
  cp -L "$(ls "$ML/$l" /lib/$(gcc -print-multiarch)/$l 2>/dev/null | head -1)" "$tmp/lib/$l"
done
cp -r /usr/src/googletest "$tmp/googletest"
cp -r /usr/share/datasets/fashion-mnist "$tmp/data/fashion-mnist"
rm -rf "$OUT"; mv "$tmp" "$OUT"; trap - EXIT
du -sh "$OUT" >&2
