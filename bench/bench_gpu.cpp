// GPU benchmark (issue 10): each quantizer's forward + backward on a large weight-shaped tensor as a
// fraction of the measured device-to-device copy bandwidth, with the fused CUDA kernels and with the
// composite ATen path (kernels off), measured in the same run.
//
// Bytes counted are the minimum of a fake-quantiser's training step: read x + write out (forward), read the
// incoming gradient + write the input gradient (backward): 16 bytes per float32 element. The copy
// reference moves 8 bytes per element (read + write). Times: median of repeated runs, synchronised.
// Run: build-gpu/bench_gpu [N_million=16] [reps=30]. Without a GPU it says so and exits 0.
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "quantizers/cuda_dispatch.h"
#include "quantizers/registry.h"

using namespace autoqnn;

namespace {

template <class F>
double median_ms(F&& f, int reps) {
  f();
  torch::cuda::synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    torch::cuda::synchronize();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("bench_gpu: no CUDA device visible; nothing to measure\n");
    return 0;
  }
  const int64_t n = static_cast<int64_t>((argc > 1 ? std::atof(argv[1]) : 16.0) * 1e6) / 576 * 576;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 30;
  const auto dev = torch::Device(torch::kCUDA);
  torch::manual_seed(0);
  // a conv weight shape [C_out, C_in, 3, 3] with n elements
  const int64_t cout = 256, cin = n / (cout * 9);
  auto w = (torch::randn({cout, cin, 3, 3}, torch::TensorOptions().device(dev)) * 0.05).contiguous();
  auto a = torch::relu(torch::randn({cout, cin, 3, 3}, torch::TensorOptions().device(dev)));
  auto g = torch::randn_like(w);
  auto dst = torch::empty_like(w);
  const double elems = static_cast<double>(w.numel());
  const double copy_ms = median_ms([&] { dst.copy_(w); }, reps);
  const double copy_gbs = elems * 8 / (copy_ms * 1e-3) / 1e9;
  std::printf("device %s, tensor [%lld, %lld, 3, 3] = %.1f M float32, fused kernels compiled: %s\n",
              "cuda:0", (long long)cout, (long long)cin, elems / 1e6, quant::cudak::compiled() ? "yes" : "no");
  std::printf("device-to-device copy: %.3f ms = %.0f GB/s (read + write)\n\n", copy_ms, copy_gbs);
  std::printf("%-22s %10s %10s %9s %9s %8s\n", "spec", "fused ms", "ATen ms", "fused %bw", "ATen %bw", "speedup");
  const std::vector<std::pair<std::string, bool>> specs = {
      {"uniform:8", false},  {"uniform:4", false},    {"uniform:4:per_channel", false}, {"fixed:4", false},
      {"fixed:8", false},    {"twn", false},          {"binary", false},                {"vecq:2", false},
      {"esb:4", false},      {"esb:3", false},        {"pot:4", false},                 {"afp:5:e=2", false},
      {"apot:4", false},     {"uniform:8", true},     {"fixed:8", true}};
  for (const auto& [spec, act] : specs) {
    auto role = act ? quant::Role::Activation : quant::Role::Weight;
    auto q = quant::make_quantizer(spec, role);
    q->to(dev);
    q->train();
    auto x = (act ? a : w).detach().clone().requires_grad_(true);
    auto step = [&] {
      x.mutable_grad() = torch::Tensor();
      auto out = q->forward(x);
      out.backward(g);
    };
    double ms[2];
    for (int k = 0; k < 2; ++k) {
      q->set_fused(k == 0);  // this quantizer's fused kernels on, then off (the composite ATen path)
      try {
        ms[k] = median_ms(step, reps);
      } catch (const std::exception& e) {
        std::printf("%-22s error: %s\n", spec.c_str(), e.what());
        ms[k] = -1;
      }
    }
    auto pct = [&](double m) { return m > 0 ? elems * 16 / (m * 1e-3) / 1e9 / copy_gbs * 100 : 0.0; };
    std::printf("%-22s %10.3f %10.3f %8.1f%% %8.1f%% %7.2fx\n", (spec + (act ? " (act)" : "")).c_str(), ms[0], ms[1],
                pct(ms[0]), pct(ms[1]), ms[0] > 0 ? ms[1] / ms[0] : 0.0);
  }
  return 0;
}
