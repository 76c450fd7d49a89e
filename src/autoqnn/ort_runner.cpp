#include "autoqnn/ort_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "autoqnn/data_files.h"
#include "autoqnn/runtime.h"

namespace autoqnn {

namespace {
std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

std::string find_ort_runner(std::string* why) {
  auto no = [&](const std::string& w) {
    if (why) *why = w;
    return std::string();
  };
  std::string script;
  if (const char* env = std::getenv("AUTOQNN_ORT_RUNNER"); env && *env) {
    script = env;
    if (!file_exists(script)) return no("AUTOQNN_ORT_RUNNER='" + script + "' does not exist");
  } else {
    script = locate_data_file("scripts/ort/run_onnx.js");
    if (script.empty()) return no("scripts/ort/run_onnx.js not found (set AUTOQNN_ORT_RUNNER)");
  }
  const auto dir = std::filesystem::path(script).parent_path();
  if (!file_exists((dir / "node_modules/onnxruntime-node/package.json").string()))
    return no("ONNX Runtime is not installed next to " + script + " (run scripts/install-ort.sh)");
  if (std::system("node --version >/dev/null 2>&1") != 0) return no("'node' (Node.js) is not on the PATH");
  return script;
}

torch::Tensor run_onnx_in_ort(const std::string& onnx_path, const torch::Tensor& images, int64_t batch, bool optimize) {
  std::string why;
  const std::string script = find_ort_runner(&why);
  if (script.empty()) throw std::runtime_error("cannot run ONNX Runtime: " + why);
  TORCH_CHECK(images.dim() == 4, "run_onnx_in_ort: images must be [N, C, H, W]");
  auto x = images.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("autoqnn_ort_" + std::to_string(::getpid()) + "_" +
                                                    std::to_string(reinterpret_cast<uintptr_t>(&x) & 0xffffff));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};
  const std::string in = (dir / "images.f32").string(), out = (dir / "logits.f32").string();
  {
    std::ofstream os(in, std::ios::binary);
    os.write(static_cast<const char*>(x.data_ptr()), static_cast<std::streamsize>(x.numel() * 4));
    if (!os) throw std::runtime_error("cannot write '" + in + "'");
  }
  std::string cmd = "node " + quote(script) + " " + quote(onnx_path) + " " + quote(in);
  for (int d = 0; d < 4; ++d) cmd += " " + std::to_string(x.size(d));
  cmd += " " + quote(out) + " " + std::to_string(batch) + (optimize ? " all" : " disabled");
  const int rc = std::system(cmd.c_str());
  if (rc != 0)
    throw std::runtime_error("ONNX Runtime failed on '" + onnx_path + "' (" + script + " exited with status " +
                             std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : rc) + ")");
  const auto bytes = fs::file_size(out);
  if (bytes == 0 || bytes % (4 * x.size(0)) != 0)
    throw std::runtime_error("ONNX Runtime wrote " + std::to_string(bytes) + " bytes for " + std::to_string(x.size(0)) +
                             " images");
  auto logits = torch::empty({x.size(0), static_cast<int64_t>(bytes / 4 / x.size(0))}, torch::kFloat32);
  std::ifstream is(out, std::ios::binary);
  is.read(static_cast<char*>(logits.data_ptr()), static_cast<std::streamsize>(bytes));
  if (!is) throw std::runtime_error("cannot read '" + out + "'");
  return logits;
}

LogitsComparison compare_logits(const torch::Tensor& ours, const torch::Tensor& ort, const torch::Tensor& labels,
                                double tolerance) {
  LogitsComparison c;
  auto a = ours.detach().to(torch::kCPU, torch::kFloat64), b = ort.detach().to(torch::kCPU, torch::kFloat64);
  if (a.sizes() != b.sizes()) {
    std::ostringstream os;
    os << "logits shapes differ: ours " << a.sizes() << ", ONNX Runtime " << b.sizes();
    throw std::runtime_error(os.str());
  }
  c.n = a.size(0);
  c.tolerance = tolerance;
  c.max_abs_diff = c.n ? (a - b).abs().max().item<double>() : 0.0;
  auto pa = a.argmax(1), pb = b.argmax(1);
  auto y = labels.to(torch::kCPU, torch::kInt64);
  c.argmax_diffs = pa.ne(pb).sum().item<int64_t>();
  c.top1_ours = c.n ? pa.eq(y).sum().item<double>() / c.n : 0.0;
  c.top1_ort = c.n ? pb.eq(y).sum().item<double>() / c.n : 0.0;
  c.ok = std::isfinite(c.max_abs_diff) && c.max_abs_diff <= tolerance && std::abs(c.top1_ours - c.top1_ort) <= 0.0005 + 1e-12;
  return c;
}

}  // namespace autoqnn
