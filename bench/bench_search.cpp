// One QSS search step on ResNet-20 (CIFAR shape, batch 128, configs/search_space/default.json) against one
// FP32 training step, measured in the same run. Requirement (docs/benchmarks.md): search step <= 2x FP32.
//
//   BM_Fp32TrainStep                forward + backward + SGD step of the plain model
//   BM_SearchStep/<mode>            forward + backward on one batch with gradients for the weights AND theta,
//                                   SGD + Adam steps (the unit the requirement is stated for)
//   BM_SearchWeightStep/<mode>      the weight half of a bilevel iteration (theta detached)
//   BM_SearchArchStep/<mode>        the architecture half (weights frozen, gradient for theta only)
//   BM_HessianTrace/<estimator>     --ilp-proxy hessian | fisher: the layer traces from one batch with 8 draws
//                                   (hutchinson: a double backward per draw; fisher: a backward per draw)
// <mode>: soft (every candidate evaluated and mixed), hard (straight-through: the sampled candidate in the
// forward value, every weight candidate for the theta gradient, the sampled act candidate only),
// hard_all (hard with every act candidate evaluated).
//
// Run: build-*/bench/bench_search [--benchmark_min_time=3] ; the ratios to the FP32 step are printed at the end.
#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "autoqnn/hessian_trace.h"
#include "autoqnn/model.h"
#include "autoqnn/runtime.h"
#include "search/arch_optimizer.h"
#include "search/qss.h"

using namespace autoqnn;
using namespace autoqnn::search;

namespace {

constexpr int64_t kBatch = 128;
const ModelConfig kCifar{3, 32, 10};

// AUTOQNN_BENCH_DEVICE=cuda runs every benchmark on the GPU (steps synchronised so real time is device time).
torch::Device bench_device() {
  const char* d = std::getenv("AUTOQNN_BENCH_DEVICE");
  return torch::Device(d && *d ? d : "cpu");
}
void sync() {
  if (bench_device().is_cuda()) torch::cuda::synchronize();
}

struct Batch {
  torch::Tensor x, y;
  Batch() {
    torch::manual_seed(0);
    x = torch::randn({kBatch, 3, 32, 32}).to(bench_device());
    y = torch::randint(0, 10, {kBatch}).to(bench_device());
  }
};
const Batch& batch() {
  static Batch b;
  return b;
}

void BM_Fp32TrainStep(benchmark::State& st) {
  torch::manual_seed(0);
  auto m = make_model("resnet20", kCifar);
  m->to(bench_device());
  m->train();
  torch::optim::SGD sgd(m->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(5e-4));
  const auto& b = batch();
  auto step = [&] {
    auto loss = torch::nn::functional::cross_entropy(m->forward(b.x), b.y);
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    sync();
  };
  step();  // warm-up (allocator, oneDNN primitives)
  for (auto _ : st) step();
  st.counters["img/s"] = benchmark::Counter(static_cast<double>(kBatch), benchmark::Counter::kIsIterationInvariantRate);
}

struct SearchSetup {
  std::unique_ptr<QssStrategy> strat;
  std::unique_ptr<torch::optim::SGD> sgd;
  std::unique_ptr<ArchAdam> adam;
  std::vector<torch::Tensor> weights;
  Budgets budgets;

  explicit SearchSetup(const std::string& mode) {
    torch::manual_seed(0);
    auto space = SearchSpace::load(std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/default.json");
    QssOptions q;
    q.sampling = mode == "soft" ? SamplingMode::Soft : SamplingMode::Hard;
    q.all_act_paths = mode == "hard_all";
    strat = std::make_unique<QssStrategy>(make_model("resnet20", kCifar), space, q);
    strat->module()->to(bench_device());
    weights = strat->weight_parameters();
    sgd = std::make_unique<torch::optim::SGD>(weights, torch::optim::SGDOptions(0.01).momentum(0.9));
    adam = std::make_unique<ArchAdam>(strat->arch_parameters(), ArchAdamOptions{});
    budgets = make_budgets(std::nullopt, 3.0, 0, 0, strat->num_weights());
    strat->module()->train();
    strat->calibrate(batch().x, 1);
  }
  // Forward + backward with gradients for the weights and theta, then both optimiser steps.
  void joint_step(uint64_t seed) {
    const auto& b = batch();
    strat->begin_step(Phase::Arch, 0.5, seed);
    auto ce = torch::nn::functional::cross_entropy(strat->forward(b.x), b.y);
    auto total = ce + cost_penalty(strat->expected_cost(), budgets).to(ce.scalar_type());
    sgd->zero_grad();
    adam->zero_grad();
    total.backward();
    sgd->step();
    adam->step();
  }
  void weight_step(uint64_t seed) {
    const auto& b = batch();
    strat->begin_step(Phase::Weights, 0.5, seed);
    auto ce = torch::nn::functional::cross_entropy(strat->forward(b.x), b.y);
    sgd->zero_grad();
    ce.backward();
    sgd->step();
  }
  void arch_step(uint64_t seed) {
    const auto& b = batch();
    for (auto& p : weights) p.requires_grad_(false);
    strat->begin_step(Phase::Arch, 0.5, seed);
    auto ce = torch::nn::functional::cross_entropy(strat->forward(b.x), b.y);
    auto total = ce + cost_penalty(strat->expected_cost(), budgets).to(ce.scalar_type());
    adam->zero_grad();
    total.backward();
    adam->step();
    for (auto& p : weights) p.requires_grad_(true);
  }
};

template <int Kind>  // 0 joint, 1 weight half, 2 arch half
void BM_Search(benchmark::State& st, const std::string& mode) {
  SearchSetup s(mode);
  uint64_t seed = 1;
  auto one = [&] {
    if (Kind == 0) s.joint_step(seed++);
    if (Kind == 1) s.weight_step(seed++);
    if (Kind == 2) s.arch_step(seed++);
    sync();
  };
  one();
  for (auto _ : st) one();
  st.counters["img/s"] = benchmark::Counter(static_cast<double>(kBatch), benchmark::Counter::kIsIterationInvariantRate);
}

// Every candidate quantizer of every layer once, forward only without autograd: the floor of what mixing
// costs (weights: all candidates; acts: all candidates on the layer inputs of one batch).
void BM_CandidateQuantizers(benchmark::State& st, bool acts) {
  SearchSetup s("soft");
  auto& net = s.strat->supernet();
  // record the inputs of every layer once
  std::vector<torch::Tensor> inputs;
  {
    torch::NoGradGuard ng;
    net.fix_argmax();
    for (auto& L : net.layers()) L.layer->record_shapes = true;
    net.forward(batch().x);
    for (auto& L : net.layers()) inputs.push_back(torch::randn(L.layer->last_input_shape).relu());
  }
  for (auto _ : st) {
    torch::NoGradGuard ng;
    for (size_t l = 0; l < net.layers().size(); ++l) {
      const auto& L = net.layers()[l];
      const auto& mq = acts ? L.aq : L.wq;
      if (!mq) continue;
      for (int64_t i = 0; i < mq->size(); ++i)
        if (mq->candidate(i)) benchmark::DoNotOptimize(mq->candidate(i)->forward(acts ? inputs[l] : L.layer->weight_param()));
    }
  }
}

void BM_HessianTrace(benchmark::State& st, TraceEstimator estimator) {
  torch::manual_seed(0);
  auto m = make_model("resnet20", kCifar);
  TensorDataset data{batch().x.cpu(), batch().y.cpu()};
  HessianTraceOptions o;
  o.estimator = estimator;
  o.batches = 1;
  o.samples = 8;
  o.batch_size = kBatch;
  o.device = bench_device();
  for (auto _ : st) {
    benchmark::DoNotOptimize(hessian_traces(*m, data, o));
    sync();
  }
  st.counters["draws/s"] = benchmark::Counter(8.0, benchmark::Counter::kIsIterationInvariantRate);
}

// Collects the real time of every benchmark to print the ratios to the FP32 step at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs)
      if (r.run_type == Run::RT_Iteration) {
        std::string name = r.benchmark_name();
        auto cut = name.find("/real_time");
        if (cut != std::string::npos) name.erase(cut);
        times_[name] = {r.GetAdjustedRealTime(), r.GetAdjustedCPUTime()};
      }
    ConsoleReporter::ReportRuns(runs);
  }
  void print_ratios() const {
    auto base = times_.find("BM_Fp32TrainStep");
    if (base == times_.end()) return;
    const double br = base->second.first, bc = base->second.second;
    std::printf("\nratio to one FP32 training step of ResNet-20 (batch %lld), same run (real time; CPU time):\n",
                static_cast<long long>(kBatch));
    for (const auto& [name, t] : times_) {
      const bool req = name.rfind("BM_SearchStep/", 0) == 0;
      std::printf("  %-32s %9.1f ms %6.2fx   %9.1f ms %6.2fx%s\n", name.c_str(), t.first, t.first / br, t.second,
                  t.second / bc, req ? (t.first / br <= 2.0 ? "   (<= 2x: ok)" : "   (> 2x!)") : "");
    }
  }

 private:
  std::map<std::string, std::pair<double, double>> times_;  // real, cpu (ms)
};

}  // namespace

int main(int argc, char** argv) {
  // AUTOQNN_BENCH_THREADS=1 gives CPU times that a loaded machine does not distort (docs/benchmarks.md).
  const char* th = std::getenv("AUTOQNN_BENCH_THREADS");
  std::printf("intra-op threads: %d\n", init_threads(th ? std::atoi(th) : 0));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark("BM_Fp32TrainStep", BM_Fp32TrainStep)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (std::string mode : {"soft", "hard", "hard_all"}) {
    benchmark::RegisterBenchmark(("BM_SearchStep/" + mode).c_str(), BM_Search<0>, mode)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  for (std::string mode : {"soft", "hard"}) {
    benchmark::RegisterBenchmark(("BM_SearchWeightStep/" + mode).c_str(), BM_Search<1>, mode)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_SearchArchStep/" + mode).c_str(), BM_Search<2>, mode)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_CandidateQuantizers/weights", BM_CandidateQuantizers, false)
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("BM_CandidateQuantizers/acts", BM_CandidateQuantizers, true)
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  for (auto e : {TraceEstimator::Hutchinson, TraceEstimator::Fisher})
    benchmark::RegisterBenchmark((std::string("BM_HessianTrace/") + trace_estimator_name(e)).c_str(), BM_HessianTrace, e)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  RatioReporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  rep.print_ratios();
  benchmark::Shutdown();
  return 0;
}
