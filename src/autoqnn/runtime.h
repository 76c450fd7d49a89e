// Process-wide runtime set-up shared by every verb: threads, device, seeding, atomic file output.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "autoqnn/data_files.h"  // run-time data files (configs/...): find_data_file, find_search_space

namespace autoqnn {

// Intra-op threads: `threads` > 0, else the number of cores (Debian's LibTorch defaults to one).
int init_threads(int threads);
// "cpu", "cuda", "cuda:N". Throws std::invalid_argument with a clear message when CUDA is unavailable.
torch::Device resolve_device(const std::string& name);
// Seeds LibTorch's CPU (and CUDA) generators; deterministic algorithms where LibTorch offers them.
void seed_everything(uint64_t seed);

// Writes `path` atomically: `writer` fills a temporary file next to it, which is renamed over `path`
// only when `writer` returns normally. On an exception the temporary is removed and `path` is untouched.
void atomic_write(const std::string& path, const std::function<void(const std::string& tmp_path)>& writer);
void atomic_write_text(const std::string& path, const std::string& text);
std::string read_text_file(const std::string& path);  // throws naming the file
bool file_exists(const std::string& path);

// Progress on stderr: one line per update on a TTY (\r), every `log_every` steps otherwise.
class Progress {
 public:
  Progress(std::string label, int64_t total_steps, int64_t items_per_step = 0);
  // metrics shown as "key value" pairs in order; rate = items/s when items_per_step > 0.
  void update(int64_t step, const std::vector<std::pair<std::string, double>>& metrics);
  void finish(const std::vector<std::pair<std::string, double>>& metrics);
  double elapsed_seconds() const;

 private:
  std::string label_;
  int64_t total_, items_per_step_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool tty_;
};

// Logging to stderr.
void log_info(const std::string& msg);
void log_warn(const std::string& msg);

}  // namespace autoqnn
