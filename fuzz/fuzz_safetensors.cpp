// libFuzzer target: the safetensors reader (autoqnn/export.cpp read_safetensors) and the tensors it returns.
// AUTOQNN_FUZZ_MAKE_SEED=DIR writes a small seed file to DIR and exits (scripts/fuzz.sh).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "autoqnn/export.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("AUTOQNN_FUZZ_MAKE_SEED")) {
    autoqnn::SafetensorsFile f;
    f.metadata["model"] = "tiny";
    f.tensors["w"] = autoqnn::to_safetensor(torch::arange(6, torch::kFloat32).reshape({2, 3}));
    f.tensors["codes"] = autoqnn::to_safetensor(torch::arange(4, torch::kUInt8));
    f.tensors["n"] = autoqnn::to_safetensor(torch::tensor({int64_t{7}}));
    autoqnn::write_safetensors(std::string(dir) + "/tiny.safetensors", f);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = autoqnn_fuzz::input_file(data, size, ".safetensors");
  try {
    auto f = autoqnn::read_safetensors(path);
    for (const auto& [name, t] : f.tensors) autoqnn::from_safetensor(t).sum();
  } catch (const std::exception&) {
  }
  return 0;
}
