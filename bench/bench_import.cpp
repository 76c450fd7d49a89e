// The import path's cost: one training step (forward + cross-entropy + backward + SGD) of the zoo LeNet-5 /
// ResNet-20-like nets vs the same network imported from TorchScript (tests/make_torchscript_models.py writes
// the Python LeNet-5), FP32 and with a 4-bit weight policy. Usage: bench_import [LENET5.pt] (default: writes
// one with /usr/bin/python3 into /tmp). Prints ms per step and the ratio imported / zoo.
#include <chrono>
#include <cstdio>
#include <string>

#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"

using namespace autoqnn;

static double ms_per_step(Model& model, int steps) {
  model.train();
  torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  torch::manual_seed(0);
  auto x = torch::randn({128, 1, 28, 28});
  auto y = torch::randint(0, 10, {128});
  auto step = [&] {
    sgd.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model.forward(x), y);
    loss.backward();
    sgd.step();
  };
  for (int i = 0; i < 3; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
}

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "/tmp/autoqnn_bench_import/lenet5.pt";
  if (argc <= 1) {
    std::string here = __FILE__;
    here = here.substr(0, here.rfind('/'));
    const std::string cmd = "/usr/bin/python3 " + here + "/../tests/make_torchscript_models.py " +
                            "/tmp/autoqnn_bench_import lenet5 > /dev/null";
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  const int threads = init_threads(0);
  const ModelConfig cfg{1, 28, 10};
  const int steps = 20;
  std::printf("training step, batch 128, 1x28x28, %d threads, %d steps (after 3 warm-up)\n", threads, steps);
  for (const char* spec : {"fp32", "fixed:4"}) {
    double best_zoo = 1e30, best_imp = 1e30;
    for (int rep = 0; rep < 3; ++rep) {  // interleaved, best of 3: the machine is shared
      auto zoo = make_model("lenet5", cfg);
      auto imp = make_model(path, cfg);
      if (std::string(spec) != "fp32") {
        const auto w = quant::QuantSpec::parse(spec), a = quant::QuantSpec::parse("fp32");
        apply_policy(*zoo, uniform_policy(*zoo, w, a));
        apply_policy(*imp, uniform_policy(*imp, w, a));
      }
      best_zoo = std::min(best_zoo, ms_per_step(*zoo, steps));
      best_imp = std::min(best_imp, ms_per_step(*imp, steps));
    }
    std::printf("lenet5 %-8s zoo %.3f ms  imported %.3f ms  ratio %.3f\n", spec, best_zoo, best_imp,
                best_imp / best_zoo);
  }
  return 0;
}
