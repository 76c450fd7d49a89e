#include "autoqnn/runtime.h"

#include "autoqnn/distributed.h"
#include "autoqnn/output_files.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

namespace autoqnn {

int init_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  return at::get_num_threads();
}

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw std::invalid_argument("--device " + name +
                                  ": this LibTorch has no CUDA support or no GPU is visible (use --device cpu, "
                                  "or build against a CUDA LibTorch: see docs/gpu.md)");
    torch::Device d(name);  // validates "cuda:N"
    if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
      throw std::invalid_argument("--device " + name + ": only " + std::to_string(torch::cuda::device_count()) +
                                  " CUDA device(s) present");
    return d;
  }
  throw std::invalid_argument("--device '" + name + "' is not valid (use cpu, cuda or cuda:N)");
}

void seed_everything(uint64_t seed) {
  torch::manual_seed(seed);
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
}

void atomic_write(const std::string& path, const std::function<void(const std::string&)>& writer) {
  if (!dist::is_main()) return;  // data-parallel runs: rank 0 alone writes (the ranks hold the same state)
  namespace fs = std::filesystem;
  check_output_path(path, "output");
  fs::path p(path);
  if (p.has_parent_path() && !fs::exists(p.parent_path())) fs::create_directories(p.parent_path());
  remove_stale_temps(path);  // left by a process killed while writing this path
  const std::string tmp = temp_path_for(path);
  try {
    writer(tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error("cannot write '" + path + "': " + ec.message());
  }
}

void atomic_write_text(const std::string& path, const std::string& text) {
  atomic_write(path, [&](const std::string& tmp) { write_file_bytes(tmp, text.data(), text.size()); });
}

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error("'" + path + "' is a directory, not a file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open '" + path + "': no such file or not readable");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw std::runtime_error("cannot read '" + path + "'");
  return ss.str();
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

// ------------------------------------------------------------------ Progress
Progress::Progress(std::string label, int64_t total_steps, int64_t items_per_step)
    : label_(std::move(label)), total_(total_steps), items_per_step_(items_per_step),
      start_(std::chrono::steady_clock::now()), last_print_(start_), tty_(::isatty(2)) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

static std::string fmt_time(double s) {
  int t = static_cast<int>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%d:%02d", t / 60, t % 60);
  return buf;
}

static std::string fmt_metrics(const std::vector<std::pair<std::string, double>>& m) {
  std::ostringstream os;
  for (const auto& [k, v] : m) {
    os << " " << k << " ";
    if (std::abs(v) >= 1000 || v == static_cast<int64_t>(v)) os << std::fixed << std::setprecision(0) << v;
    else os << std::fixed << std::setprecision(4) << v;
  }
  return os.str();
}

void Progress::update(int64_t step, const std::vector<std::pair<std::string, double>>& metrics) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  bool last = step >= total_;
  if (!dist::is_main()) return;  // one progress line per run, from rank 0
  // TTY: redraw at most 5x/s; logs/pipes: a line every 10 s so CI logs stay short.
  if (!last && since < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  double el = elapsed_seconds();
  double rate = items_per_step_ > 0 && el > 0 ? step * items_per_step_ / el : 0;
  double eta = step > 0 ? el * (total_ - step) / step : 0;
  std::ostringstream os;
  int pct = total_ > 0 ? static_cast<int>(100.0 * step / total_) : 100;
  os << label_ << " " << std::setw(3) << pct << "% " << step << "/" << total_ << fmt_metrics(metrics);
  if (rate > 0) os << " | " << std::fixed << std::setprecision(0) << rate << " img/s";
  os << " | " << fmt_time(el) << " ETA " << fmt_time(eta);
  if (tty_) std::cerr << "\r\033[K" << os.str() << std::flush;
  else std::cerr << os.str() << "\n";
}

void Progress::finish(const std::vector<std::pair<std::string, double>>& metrics) {
  if (!dist::is_main()) return;
  std::ostringstream os;
  os << label_ << " done" << fmt_metrics(metrics) << " | " << fmt_time(elapsed_seconds());
  if (tty_) std::cerr << "\r\033[K";
  std::cerr << os.str() << "\n";
}

// Data-parallel runs: information from rank 0 only; warnings from every rank, tagged with it.
void log_info(const std::string& msg) {
  if (dist::is_main()) std::cerr << "[autoqnn] " << msg << "\n";
}
void log_warn(const std::string& msg) {
  std::cerr << "[autoqnn] " << (dist::active() ? "rank " + std::to_string(dist::rank()) + " " : "") << "WARNING: " << msg
            << "\n";
}

}  // namespace autoqnn
