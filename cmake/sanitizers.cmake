# Instrumented builds, each in a build folder of its own (never the main `build`):
#   AUTOQNN_SANITIZE  ASan + UBSan over every target (scripts/sanitize.sh runs the test suite with it).
#   AUTOQNN_FUZZ      clang only: the libraries with -fsanitize=fuzzer-no-link,address,undefined and the
#                     libFuzzer targets of fuzz/ (scripts/fuzz.sh). LibTorch itself stays uninstrumented.
option(AUTOQNN_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(AUTOQNN_FUZZ "Build the libFuzzer targets in fuzz/ (clang)" OFF)

# vptr checks need RTTI of every polymorphic type, LibTorch's included: off (false reports).
set(AUTOQNN_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g1)  # -g1: line tables for reports; full -g doubles the build
if(AUTOQNN_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "AUTOQNN_FUZZ needs clang (cmake -DCMAKE_CXX_COMPILER=clang++ ...)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link ${AUTOQNN_SAN_FLAGS})
  add_link_options(-fsanitize=address,undefined)
elseif(AUTOQNN_SANITIZE)
  add_compile_options(${AUTOQNN_SAN_FLAGS})
  add_link_options(-fsanitize=address,undefined)
endif()
