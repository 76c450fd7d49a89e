// Output files: the one place that decides how a verb writes a path. Every write goes to a temporary next
// to the target ("<path>.autoqnn-tmp.<pid>") that is renamed over it when complete; temporaries of
// processes that no longer exist are removed by the next write to the same path (or `autoqnn clean`).
// Outputs are checked before any work (not a directory, parent a directory, not an input of the run) and
// held under an advisory lock so two processes never write one path at once.
#pragma once
#include <string>
#include <vector>

namespace autoqnn {

// "<path>.autoqnn-tmp.<pid of this process>".
std::string temp_path_for(const std::string& path);
// Removes "<path>.autoqnn-tmp.<pid>" (and the older "<path>.tmp.<pid>") whose process is gone; returns them.
std::vector<std::string> remove_stale_temps(const std::string& path);
// The same for every file under `dir` (stale temporaries and unheld "*.autoqnn-lock" files): `autoqnn clean`.
std::vector<std::string> clean_stale_files(const std::string& dir, bool recursive);

// Throws std::runtime_error naming `what` (e.g. "--out") when `path` cannot be written as a file: empty, a
// directory, a parent that exists but is not a directory, an unwritable directory.
void check_output_path(const std::string& path, const std::string& what);
// True when both paths name the same existing file (symlinks, hard links, "./" and ".." resolved).
bool same_file(const std::string& a, const std::string& b);

// Writes `size` bytes to `path` (created / truncated) with every error reported: a short write (disk full,
// file-size limit) throws naming the file and the reason, never leaves a partial file behind it unnoticed.
void write_file_bytes(const std::string& path, const void* data, size_t size);

// An advisory lock (flock) on "<path>.autoqnn-lock", held for the object's life; the lock file is removed
// on release. A second process asking for the same path fails at once, naming the pid that holds it.
class OutputLock {
 public:
  OutputLock(const std::string& path, const std::string& what);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  static std::string lock_path_for(const std::string& path);

 private:
  std::string lock_path_;
  int fd_ = -1;
};

}  // namespace autoqnn
