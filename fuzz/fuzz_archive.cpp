// libFuzzer target: the zip archive check (autoqnn/archive_check.cpp) that runs before LibTorch parses any
// checkpoint or TorchScript file: its file and in-memory readers must agree and never crash. Needs only
// zlib, so it also builds alone (docs/reliability.md).
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "autoqnn/archive_check.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string path = autoqnn_fuzz::input_file(data, size, ".pt");
  std::string from_file, from_bytes;
  autoqnn::ArchiveCheckOptions opts;
  opts.defer_storage_crc = size % 2 == 0;  // both modes
  try {
    from_file = autoqnn::check_torch_archive_file(path, opts).prefix;
  } catch (const std::runtime_error& e) {
    from_file = std::string("error: ") + e.what();
    from_file.replace(from_file.find(path), path.size(), "X");
  }
  try {
    from_bytes = autoqnn::check_torch_archive_bytes(bytes, path, opts).prefix;
  } catch (const std::runtime_error& e) {
    from_bytes = std::string("error: ") + e.what();
    from_bytes.replace(from_bytes.find(path), path.size(), "X");
  }
  if (from_file != from_bytes) std::abort();  // the two readers disagree
  return 0;
}
