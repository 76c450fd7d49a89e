#include "autoqnn/data_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace autoqnn {

namespace {

// The install layout, from CMakeLists.txt (set on this file only); defaults for a build without them.
#ifndef AUTOQNN_DATA_DIR
#define AUTOQNN_DATA_DIR "/usr/local/share/autoqnn"
#endif
#ifndef AUTOQNN_EXE_TO_DATA_DIR
#define AUTOQNN_EXE_TO_DATA_DIR "../share/autoqnn"
#endif

bool readable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), R_OK) == 0;
}

// The directory of the running executable ("" when /proc is not there). readlink(2) rather than
// std::filesystem (see tests/test_util.h on the wheel LibTorch's std::filesystem).
std::string exe_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  const std::string exe(buf, static_cast<size_t>(n));
  const auto slash = exe.rfind('/');
  return slash == std::string::npos ? "" : exe.substr(0, slash);
}

std::string join(const std::string& dir, const std::string& rel) {
  return std::filesystem::path(dir + "/" + rel).lexically_normal().string();
}

std::string list(const std::vector<std::string>& places) {
  std::string out;
  for (const auto& p : places) out += (out.empty() ? "" : ", ") + p;
  return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

std::vector<std::string> data_file_locations(const std::string& rel) {
  std::vector<std::string> out = {rel};
  if (rel.empty() || rel[0] == '/') return out;
  auto add = [&](const std::string& dir) {
    if (dir.empty()) return;
    std::string p = join(dir, rel);
    for (const auto& q : out)
      if (q == p) return;
    out.push_back(std::move(p));
  };
  add(AUTOQNN_DATA_DIR);
  const std::string exe = exe_dir();
  if (!exe.empty()) add(exe + "/" + AUTOQNN_EXE_TO_DATA_DIR);
  add(AUTOQNN_SOURCE_DIR);
  return out;
}

std::string locate_data_file(const std::string& rel) {
  if (rel.empty()) return "";
  for (const auto& p : data_file_locations(rel))
    if (readable_file(p)) return p;
  return "";
}

std::string find_data_file(const std::string& rel) {
  if (rel.empty()) throw std::runtime_error("no data file named (an empty path)");
  std::string found = locate_data_file(rel);
  if (found.empty())
    throw std::runtime_error("cannot find data file '" + rel + "' (looked in: " + list(data_file_locations(rel)) + ")");
  return found;
}

std::string find_search_space(const std::string& name) {
  std::string rel = name;
  if (!name.empty() && name.find('/') == std::string::npos && !ends_with(name, ".json") && !readable_file(name))
    rel = "configs/search_space/" + name + ".json";
  std::string found = locate_data_file(rel);
  if (found.empty())
    throw std::runtime_error("cannot open search space '" + name + "' (see configs/search_space/): looked in " +
                             list(data_file_locations(rel)));
  return found;
}

}  // namespace autoqnn
