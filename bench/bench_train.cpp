// FP32 training throughput (images/s) of the zoo models at batch 128 on Fashion-MNIST-shaped input:
// one SGD step = forward + cross-entropy + backward + optimizer update.
#include <benchmark/benchmark.h>

#include <thread>

#include "autoqnn/model.h"
#include "autoqnn/runtime.h"

using namespace autoqnn;

static void BM_TrainStep(benchmark::State& state, const char* name) {
  init_threads(0);
  torch::manual_seed(0);
  auto model = make_model(name, ModelConfig{1, 28, 10});
  model->train();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const int64_t batch = 128;
  auto x = torch::randn({batch, 1, 28, 28});
  auto y = torch::randint(0, 10, {batch});
  for (int i = 0; i < 2; ++i) {  // warm-up (allocator, first-call overheads)
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(model->forward(x), y).backward();
    sgd.step();
  }
  for (auto _ : state) {
    sgd.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    sgd.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["images_per_s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                                      benchmark::Counter::kIsRate);
  state.counters["threads"] = at::get_num_threads();
}
BENCHMARK_CAPTURE(BM_TrainStep, lenet5, "lenet5")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_TrainStep, resnet20, "resnet20")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
