// File-system helpers for tests that avoid std::filesystem's directory walking: with the Python-wheel
// LibTorch 2.x on GPU machines, libtorch.so interposes its own (older, incompatible) copy of
// std::filesystem::remove_all / directory_iterator, which crashes on populated directories.
#pragma once
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>

#include <string>
#include <vector>

namespace autoqnn_test {

// rm -rf path (no error when it does not exist).
inline void remove_tree(const std::string& path) {
  nftw(
      path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

// Names in a directory (no "." / "..").
inline std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
  }
  return out;
}

}  // namespace autoqnn_test
