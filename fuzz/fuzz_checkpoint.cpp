// libFuzzer target: the checkpoint loader (autoqnn/checkpoint.cpp): metadata, then the weights (names,
// shapes, checksums) into a two-tensor module. AUTOQNN_FUZZ_MAKE_SEED=DIR writes a seed checkpoint of that
// module to DIR and exits (scripts/fuzz.sh).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "autoqnn/checkpoint.h"
#include "fuzz_util.h"

namespace {
struct Tiny : torch::nn::Module {
  Tiny() {
    register_parameter("w", torch::arange(6, torch::kFloat32).reshape({2, 3}));
    register_buffer("b", torch::ones({3}));
  }
};
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("AUTOQNN_FUZZ_MAKE_SEED")) {
    Tiny t;
    autoqnn::CheckpointMeta m;
    m.model = "tiny";
    autoqnn::save_checkpoint(std::string(dir) + "/tiny.ckpt", t, m);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = autoqnn_fuzz::input_file(data, size, ".pt");
  try {
    autoqnn::read_checkpoint_meta(path);
    Tiny t;
    autoqnn::load_checkpoint_weights(path, t);
  } catch (const std::exception&) {
  }
  return 0;
}
