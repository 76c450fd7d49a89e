// libFuzzer target: the search-space reader (search/search_space.cpp), from the file as `--space` reads it,
// and resolving the space against a fixed list of layer names.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "search/search_space.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = autoqnn_fuzz::input_file(data, size, ".json");
  try {
    auto space = autoqnn::search::SearchSpace::load(path);
    space.resolve({"conv1", "conv2", "fc1", "fc2", "fc3"});
  } catch (const std::exception&) {
  }
  return 0;
}
