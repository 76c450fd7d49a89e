// The checks every verb's flags get before any work: outputs are writable file paths, no output is one of
// the run's inputs (or another output), numbers are finite; then each output is locked for the run.
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <memory>

#include "autoqnn/output_files.h"
#include "cli.h"

namespace autoqnn::cli {

namespace {
// The flags that name files a verb writes (every other path-valued flag is read).
const char* const kOutputFlags[] = {"out", "policy-out", "checkpoint-out", "state", "log"};

bool is_output_flag(const std::string& name) {
  for (const char* f : kOutputFlags)
    if (name == f) return true;
  return false;
}

const std::string* string_value(const po::variable_value& v) {
  return v.empty() ? nullptr : boost::any_cast<std::string>(&v.value());
}

// Held until the process ends: a second process writing the same output fails fast (output_files.h).
std::vector<std::unique_ptr<OutputLock>>& held_locks() {
  static std::vector<std::unique_ptr<OutputLock>> locks;
  return locks;
}
}  // namespace

void check_flag_values(const po::variables_map& vm) {
  for (const auto& [name, v] : vm) {
    if (v.empty()) continue;
    double x = 0;
    if (const auto* d = boost::any_cast<double>(&v.value())) x = *d;
    else if (const auto* f = boost::any_cast<float>(&v.value())) x = *f;
    else continue;
    if (!std::isfinite(x))
      throw UsageError("--" + name + " " + (std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf")) +
                       ": not a finite number");
  }
}

// The rank this process will have in a data-parallel run (--rank, else $RANK, else 0), known before
// dist::init runs.
static int launch_rank(const po::variables_map& vm) {
  if (auto it = vm.find("rank"); it != vm.end() && !it->second.empty()) {
    if (const int* r = boost::any_cast<int>(&it->second.value()); r && *r >= 0) return *r;
  }
  const char* env = std::getenv("RANK");
  return env && *env ? std::atoi(env) : 0;
}

void check_and_lock_outputs(const po::variables_map& vm) {
  std::vector<std::pair<std::string, std::string>> outputs, inputs;  // (flag, path)
  for (const auto& [name, v] : vm) {
    const std::string* s = string_value(v);
    if (!s || s->empty()) continue;
    if (is_output_flag(name)) outputs.emplace_back(name, *s);
    else if (std::error_code ec; std::filesystem::is_regular_file(*s, ec)) inputs.emplace_back(name, *s);
  }
  for (const auto& [flag, path] : outputs) check_output_path(path, "--" + flag);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& [oflag, out] = outputs[i];
    for (const auto& [iflag, in] : inputs)
      if (same_file(out, in))
        throw std::runtime_error("--" + oflag + " '" + out + "' is the same file as --" + iflag + " '" + in +
                                 "': refusing to overwrite an input (write to another path)");
    for (size_t k = 0; k < i; ++k)
      if (same_file(out, outputs[k].second))
        throw std::runtime_error("--" + oflag + " '" + out + "' and --" + outputs[k].first + " '" +
                                 outputs[k].second + "' are the same file: each output needs its own path");
  }
  // Data parallel: every rank is given the same --out, but only rank 0 writes (atomic_write), so only it
  // locks; a second rank taking the lock would refuse its own run.
  if (launch_rank(vm) != 0) return;
  for (const auto& [flag, path] : outputs)
    if (flag != "log") held_locks().push_back(std::make_unique<OutputLock>(path, "--" + flag));
}

}  // namespace autoqnn::cli
