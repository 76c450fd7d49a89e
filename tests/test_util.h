// Shared test helpers.
//  * File-system helpers that avoid std::filesystem's directory walking: with the Python-wheel LibTorch 2.x
//    on GPU machines, libtorch.so interposes its own (older, incompatible) copy of
//    std::filesystem::remove_all / directory_iterator, which crashes on populated directories.
//  * run_cli: runs the built `autoqnn` (AUTOQNN_CLI_PATH) and captures its exit code and output.
#pragma once
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace autoqnn_test {

// rm -rf path (no error when it does not exist).
// The Python that runs the test-time helpers (TorchScript files, numpy readers): Debian's /usr/bin/python3
// here; AUTOQNN_PYTHON on a machine whose torch lives elsewhere (the GPU machine's venv).
inline std::string python() {
  const char* p = std::getenv("AUTOQNN_PYTHON");
  return (p && *p) ? std::string(p) : std::string("/usr/bin/python3");
}

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

struct CliResult {
  int rc = -1;
  std::string out;  // stdout (+ stderr when merged)
};

// Every path below `path` (files and directories, not `path` itself).
inline std::vector<std::string> list_tree(const std::string& path) {
  static thread_local std::vector<std::string>* acc = nullptr;
  std::vector<std::string> out;
  acc = &out;
  nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW* f) {
        if (f->level > 0) acc->push_back(p);
        return 0;
      },
      16, FTW_PHYS);
  acc = nullptr;
  return out;
}

// Runs a shell command line, stdout + stderr merged.
inline CliResult run_cli_command(const std::string& cmd_line) {
  const std::string cmd = cmd_line + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline CliResult run_cli(const std::string& args, bool merge_stderr = true) {
  const std::string cmd = std::string(AUTOQNN_CLI_PATH) + " " + args;
  return run_cli_command(merge_stderr ? cmd : "{ " + cmd + " 2>/dev/null; }");  // a group: its stderr stays dropped
}

}  // namespace autoqnn_test
