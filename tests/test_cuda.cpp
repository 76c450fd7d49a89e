// CUDA paths: the fused kernels against the composite ATen path (same device, bit for bit) and against the
// CPU (same function; statistics reduced in another order may move a level boundary by one ulp), reduced
// precision inputs, and a model forward on the GPU. Every test skips where no GPU is visible.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "quantizers/cuda_dispatch.h"
#include "quantizers/registry.h"

using namespace autoqnn;

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

const std::vector<std::string> kWeightSpecs = {
    "uniform:8", "uniform:4:per_channel", "uniform:3:asym", "fixed:4", "fixed:2:per_channel", "twn",
    "twn:per_channel", "binary", "vecq:2", "clipq:3", "esb:4", "esb:3", "pot:4", "afp:5:e=2",
    "apot:4", "fixed:4:grad=pwl_c", "esb:4:grad=pwl_c"};

struct Run {
  torch::Tensor out, grad;
};
Run run(const std::string& spec, const torch::Tensor& x0, const torch::Tensor& g, quant::Role role, bool kernels) {
  auto q = quant::make_quantizer(spec, role);
  q->set_fused(kernels);  // off: the composite ATen path
  q->to(x0.device());
  q->train();
  auto x = x0.detach().clone().requires_grad_(true);
  auto out = q->forward(x);
  out.backward(g);
  return {out.detach(), x.grad().detach()};
}

torch::Tensor weight(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({64, 32, 3, 3}) * 0.05;
}

}  // namespace

TEST(Cuda, FusedKernelsMatchCompositeExactly) {
  SKIP_WITHOUT_CUDA();
  if (!quant::cudak::compiled()) GTEST_SKIP() << "built without the fused CUDA kernels";
  auto x = weight(1).cuda();
  auto g = torch::randn_like(x);
  for (const auto& s : kWeightSpecs) {
    auto k = run(s, x, g, quant::Role::Weight, true);
    auto c = run(s, x, g, quant::Role::Weight, false);
    EXPECT_TRUE(torch::equal(k.out, c.out)) << s << ": max diff " << (k.out - c.out).abs().max().item<double>();
    // Gradients: exact for the affine family; the power-of-two family's fused node multiplies by one
    // precomputed factor scale / (div * alpha) where autograd applies the steps one by one (ulp-level).
    EXPECT_TRUE(torch::allclose(k.grad, c.grad, 1e-5, 0)) << s;
    // the output really is quantized: few distinct values per tensor / channel
    EXPECT_LT(std::get<0>(at::_unique(k.out.flatten().slice(0, 0, 288))).numel(), 257) << s;
  }
}

TEST(Cuda, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  auto x = weight(2);
  auto g = torch::randn_like(x);
  for (const auto& s : kWeightSpecs) {
    auto cpu = run(s, x, g, quant::Role::Weight, true);
    auto gpu = run(s, x.cuda(), g.cuda(), quant::Role::Weight, true);
    auto d = (cpu.out - gpu.out.cpu()).abs();
    const double scale = cpu.out.abs().max().item<double>();
    // identical but for elements within an ulp of a decision boundary
    const double frac = (d > 1e-6 * scale).to(torch::kFloat64).mean().item<double>();
    EXPECT_LT(frac, 1e-3) << s << ": " << frac << " of the elements differ";
    EXPECT_LT(d.max().item<double>(), scale * 1.01) << s;
    const double gfrac = ((cpu.grad - gpu.grad.cpu()).abs() > 1e-6).to(torch::kFloat64).mean().item<double>();
    EXPECT_LT(gfrac, 1e-3) << s;
  }
}

TEST(Cuda, ReducedPrecisionInputs) {
  SKIP_WITHOUT_CUDA();
  auto x = weight(3).cuda();
  for (auto dt : {torch::kFloat16, torch::kBFloat16}) {
    for (const std::string s : {"uniform:4", "fixed:4", "twn", "vecq:2"}) {
      auto q = quant::make_quantizer(s, quant::Role::Weight);  // fused kernels on (the default)
      q->to(x.device());
      auto xl = x.to(dt).requires_grad_(true);
      auto out = q->forward(xl);
      ASSERT_EQ(out.scalar_type(), dt) << s;
      out.sum().backward();
      ASSERT_TRUE(xl.grad().defined()) << s;
      auto ref = q->forward(xl.detach().to(torch::kFloat32));
      // one rounding of the output to the narrow type
      const double tol = (dt == torch::kFloat16 ? 1e-3 : 8e-3) * ref.abs().max().item<double>();
      const double frac = ((out.to(torch::kFloat32) - ref).abs() > tol).to(torch::kFloat64).mean().item<double>();
      // statistics reduced in the narrow type move a few decision boundaries (vecq:2 bf16: 0.18 % seen)
      EXPECT_LT(frac, dt == torch::kFloat16 ? 1e-3 : 5e-3) << s << " " << c10::toString(dt);
    }
  }
}

TEST(Cuda, QuantizedModelForwardMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(0);
  auto m = make_model("resnet20", ModelConfig{1, 28, 10});
  apply_policy(*m, uniform_policy(*m, quant::QuantSpec::parse("fixed:4"), quant::QuantSpec::parse("fp32"), 8));
  m->eval();
  auto x = torch::rand({8, 1, 28, 28});
  torch::NoGradGuard ng;
  auto cpu = m->forward(x);
  m->to(torch::kCUDA);
  auto gpu = m->forward(x.cuda()).cpu();
  EXPECT_LT((cpu - gpu).abs().max().item<double>(), 2e-2 * cpu.abs().max().item<double>());
  EXPECT_TRUE(torch::equal(cpu.argmax(1), gpu.argmax(1)));
}
