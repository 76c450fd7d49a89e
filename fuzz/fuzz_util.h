// Shared by the libFuzzer targets: the file-based readers get the input through a per-process file.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace autoqnn_fuzz {

// Writes the input to a file of this process (in $TMPDIR or /tmp) and returns its path.
inline std::string input_file(const uint8_t* data, size_t size, const char* ext) {
  const char* dir = std::getenv("TMPDIR");
  static const std::string path =
      std::string(dir && *dir ? dir : "/tmp") + "/autoqnn-fuzz-" + std::to_string(::getpid()) + ext;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace autoqnn_fuzz
