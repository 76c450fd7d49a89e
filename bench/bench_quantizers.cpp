// Forward + backward cost of every scheme in scheme_table() (schemes added later are picked up), against the
// cost of one clone() of the same tensor:
//   weights:     [256, 256, 4, 4]  (1M elements), every weight-capable scheme at its default bitwidth;
//   activations: [64, 64, 28, 28]  (3.2M elements), every activation-capable scheme at its default bitwidth.
// Counters: x_clone = min time of forward + backward / min time of one clone() of the same tensor (the clone is
// timed in the same loop, outside the measured time, so both see the same machine load); x_clone_mean the same
// with means; clone_us; Melem/s. mul2_fwd_bwd (y = 2x with autograd) is the floor of any autograd op.
// Schemes that cannot be constructed or run (e.g. not implemented yet) are skipped with the reason.
// --benchmark_min_time=0.2 keeps a full run short; AUTOQNN_BENCH_THREADS=n sets the thread count.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "quantizers/registry.h"

using namespace autoqnn::quant;

namespace {

const std::vector<int64_t> kWeightShape = {256, 256, 4, 4};
const std::vector<int64_t> kActShape = {64, 64, 28, 28};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Reason of a failure, without the c10 backtrace.
std::string reason(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

void BM_Clone(benchmark::State& state, std::vector<int64_t> shape) {
  auto x = torch::randn(shape);
  for (auto _ : state) {
    auto y = x.clone();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.counters["Melem/s"] =
      benchmark::Counter(static_cast<double>(x.numel()) * state.iterations() / 1e6, benchmark::Counter::kIsRate);
  state.counters["x_clone"] = 1.0;
}

// Times forward + backward of `fwd` on x (gradient g). The clone baseline is timed inside the same loop
// (outside the measured time), so that both see the same machine load; x_clone = min(fwd+bwd) / min(clone),
// x_clone_mean = mean / mean.
template <class Fwd>
void time_against_clone(benchmark::State& state, torch::Tensor& x, const torch::Tensor& g, Fwd fwd) {
  double fb_sum = 0, fb_min = 1e30, cl_sum = 0, cl_min = 1e30;
  const auto xd = x.detach();
  for (auto _ : state) {
    state.PauseTiming();
    double c0 = now_s();
    auto c = xd.clone();
    benchmark::DoNotOptimize(c.data_ptr());
    double c1 = now_s();
    c = torch::Tensor();
    cl_sum += c1 - c0;
    cl_min = std::min(cl_min, c1 - c0);
    x.mutable_grad() = torch::Tensor();
    state.ResumeTiming();
    double t0 = now_s();
    auto y = fwd();
    y.backward(g);
    benchmark::DoNotOptimize(x.grad().data_ptr());
    double t1 = now_s();
    fb_sum += t1 - t0;
    fb_min = std::min(fb_min, t1 - t0);
  }
  state.counters["x_clone"] = fb_min / cl_min;
  state.counters["x_clone_mean"] = fb_sum / std::max(cl_sum, 1e-12);
  state.counters["clone_us"] = cl_min * 1e6;
}

void BM_FwdBwd(benchmark::State& state, std::string spec, Role role, std::vector<int64_t> shape, bool fused) {
  QuantizerPtr q;
  try {
    q = make_quantizer(spec, role);
  } catch (const std::exception& e) {
    state.SkipWithError(reason(e).c_str());
    for (auto _ : state) {
    }
    return;
  }
  q->set_fused(fused);  // this quantizer only
  torch::manual_seed(0);
  auto x0 = role == Role::Activation ? torch::randn(shape).clamp_min(0) : torch::randn(shape) * 0.05;
  auto x = x0.requires_grad_(true);
  auto g = torch::randn(shape);
  q->train();
  try {
    q->calibrate(x.detach());
    q->forward(x).backward(g);  // warm-up (running statistics initialised)
  } catch (const std::exception& e) {
    state.SkipWithError(reason(e).c_str());
    for (auto _ : state) {
    }
    return;
  }
  time_against_clone(state, x, g, [&] { return q->forward(x); });
  state.counters["Melem/s"] =
      benchmark::Counter(static_cast<double>(x.numel()) * state.iterations() / 1e6, benchmark::Counter::kIsRate);
}

// Reference point: the cheapest autograd op, y = 2x, forward + backward on the same tensor.
void BM_MulFwdBwd(benchmark::State& state, std::vector<int64_t> shape) {
  auto x = torch::randn(shape).requires_grad_(true);
  auto g = torch::randn(shape);
  time_against_clone(state, x, g, [&] { return x * 2; });
}

std::string shape_name(const std::vector<int64_t>& s) {
  std::string n;
  for (auto d : s) n += (n.empty() ? "" : "x") + std::to_string(d);
  return n;
}

void register_all() {
  benchmark::RegisterBenchmark(("clone/w/" + shape_name(kWeightShape)).c_str(), BM_Clone, kWeightShape)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("clone/a/" + shape_name(kActShape)).c_str(), BM_Clone, kActShape)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("mul2_fwd_bwd/w/" + shape_name(kWeightShape)).c_str(), BM_MulFwdBwd, kWeightShape)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("mul2_fwd_bwd/a/" + shape_name(kActShape)).c_str(), BM_MulFwdBwd, kActShape)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  for (const auto& t : scheme_table()) {
    const std::string spec = std::string(t.name) + ":" + std::to_string(t.default_bits);
    if (t.weight_ok)
      benchmark::RegisterBenchmark(("fwd_bwd/w/" + spec).c_str(), BM_FwdBwd, spec, Role::Weight, kWeightShape, true)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    if (t.act_ok)
      benchmark::RegisterBenchmark(("fwd_bwd/a/" + spec).c_str(), BM_FwdBwd, spec, Role::Activation, kActShape, true)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  }
  // The same work without the fused CPU kernels (tensor-op composites), and the per-channel / PWL_C variants.
  for (const char* s : {"uniform:8", "fixed:8", "twn:2"})
    benchmark::RegisterBenchmark(("fwd_bwd/w/" + std::string(s) + "/composite").c_str(), BM_FwdBwd, std::string(s),
                                 Role::Weight, kWeightShape, false)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  for (const char* s : {"uniform:8:per_channel", "uniform:8:grad=pwl_c", "fixed:8:per_channel", "twn:per_channel"})
    benchmark::RegisterBenchmark(("fwd_bwd/w/" + std::string(s)).c_str(), BM_FwdBwd, std::string(s), Role::Weight,
                                 kWeightShape, true)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  // All cores by default; AUTOQNN_BENCH_THREADS=n overrides (n = 1 makes the CPU-time column the total work,
  // which is steadier than wall time on a loaded machine).
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (const char* env = std::getenv("AUTOQNN_BENCH_THREADS")) threads = std::max(1, std::atoi(env));
  at::set_num_threads(threads);
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
