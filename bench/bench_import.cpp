// The import path's cost: one training step (forward + cross-entropy + backward + SGD) of a zoo model vs the
// same network written in Python, scripted and imported from TorchScript (tests/make_torchscript_models.py:
// lenet5, resnet20), under FP32, a 4-bit weight policy and a W4A4 policy (weights fixed:4, activations
// uniform:4). Zoo and imported runs alternate within each repetition (the machine is shared); the figure is
// the median over repetitions of ms per step, with the forward alone (train mode, autograd recorded) and the
// rest (backward + SGD) split out.
// Times are process CPU time with 1 intra-op thread (AUTOQNN_BENCH_THREADS to change it).
// Usage: bench_import [REPS] [MODEL_DIR] (default 5, a fresh folder under /tmp written with the tests' Python).
#include <algorithm>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"

using namespace autoqnn;
// Process CPU time, not wall time: on a shared, loaded machine the wall clock measures the other processes too.
// With one intra-op thread (the default here) CPU time is the step's own cost.
struct Clock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<Clock, duration>;
  static time_point now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return time_point(duration(int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec));
  }
};

namespace {

struct StepTimes {
  double step = 0, forward = 0;  // ms per step; forward alone
};

StepTimes time_steps(Model& model, const torch::Tensor& x, const torch::Tensor& y, int steps) {
  model.train();
  torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto step = [&](double* fwd_ms) {
    sgd.zero_grad();
    const auto t0 = Clock::now();
    auto logits = model.forward(x);
    if (fwd_ms) *fwd_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    torch::nn::functional::cross_entropy(logits, y).backward();
    sgd.step();
  };
  for (int i = 0; i < 2; ++i) step(nullptr);
  StepTimes t;
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step(&t.forward);
  t.step = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
  t.forward /= steps;
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Case {
  const char* zoo;
  ModelConfig cfg;
  int64_t batch;
  int steps;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  std::string dir = argc > 2 ? argv[2] : "";
  if (dir.empty()) {
    dir = "/tmp/autoqnn_bench_import." + std::to_string(::getpid());
    std::string here = __FILE__;
    here = here.substr(0, here.rfind('/'));
    const char* py = std::getenv("AUTOQNN_PYTHON");
    const std::string cmd = std::string(py && *py ? py : "/usr/bin/python3") + " " + here +
                            "/../tests/make_torchscript_models.py " + dir + " lenet5 resnet20 > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "could not run: %s\n", cmd.c_str());
      return 1;
    }
  }
  const char* th = std::getenv("AUTOQNN_BENCH_THREADS");
  const int threads = init_threads(th && *th ? std::atoi(th) : 1);
  std::printf("training step (forward + cross-entropy + backward + SGD), CPU ms, %d threads, median of %d repetitions\n",
              threads, reps);
  std::printf("%-9s %-14s %9s %9s %7s | %9s %9s %7s\n", "model", "policy", "zoo ms", "import ms", "ratio",
              "zoo fwd", "imp fwd", "ratio");
  const std::vector<Case> cases = {{"lenet5", {1, 28, 10}, 128, 10},
                                   {"resnet20", {3, 32, 10}, 32, 5}};
  struct Pol {
    const char* name;
    const char* w;
    const char* a;
  };
  const std::vector<Pol> pols = {{"fp32", "fp32", "fp32"}, {"fixed:4", "fixed:4", "fp32"},
                                 {"W4A4", "fixed:4", "uniform:4"}};
  for (const auto& c : cases) {
    const ModelConfig cfg{c.cfg.in_channels, c.cfg.image_size, 10};
    torch::manual_seed(0);
    auto x = torch::randn({c.batch, cfg.in_channels, cfg.image_size, cfg.image_size});
    auto y = torch::randint(0, 10, {c.batch});
    for (const auto& p : pols) {
      std::vector<double> zs, is, zf, imf, ratio;
      for (int rep = 0; rep < reps; ++rep) {
        auto zoo = make_model(c.zoo, cfg);
        auto imp = make_model(dir + "/" + c.zoo + ".pt", cfg);
        if (std::string(p.name) != "fp32") {
          const auto w = quant::QuantSpec::parse(p.w), a = quant::QuantSpec::parse(p.a);
          apply_policy(*zoo, uniform_policy(*zoo, w, a));
          apply_policy(*imp, uniform_policy(*imp, w, a));
        }
        // Alternate which runs first: a slow phase of the shared machine hits both sides alike.
        StepTimes tz, ti;
        if (rep % 2 == 0) {
          tz = time_steps(*zoo, x, y, c.steps);
          ti = time_steps(*imp, x, y, c.steps);
        } else {
          ti = time_steps(*imp, x, y, c.steps);
          tz = time_steps(*zoo, x, y, c.steps);
        }
        zs.push_back(tz.step);
        is.push_back(ti.step);
        zf.push_back(tz.forward);
        imf.push_back(ti.forward);
        ratio.push_back(ti.step / tz.step);
      }
      std::printf("%-9s %-14s %9.2f %9.2f %7.3f | %9.2f %9.2f %7.3f   (median of per-rep ratios %.3f)\n", c.zoo,
                  p.name, median(zs), median(is), median(is) / median(zs), median(zf), median(imf),
                  median(imf) / median(zf), median(ratio));
      std::fflush(stdout);
    }
  }
  return 0;
}
