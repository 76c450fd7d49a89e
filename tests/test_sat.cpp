// SAT nested weights (quantizers/sat.cpp) and the CG-PACT gradient of pact (quantizers/pact.cpp).
#include <gtest/gtest.h>

#include "quantizers/registry.h"

using namespace autoqnn::quant;

TEST(Sat, HandComputedLevels) {
  // t = tanh(x) / tanh(2) = {-.7900, 0, .4795, 1}; u = (t + 1) / 2 = {.1050, .5, .7398, 1}
  // 2 bits: codes floor(4u) clipped to 3 = {0, 2, 2, 3}; Q = (2 code + 1) / 4 - 1 = {-.75, .25, .25, .75}
  auto q = make_quantizer("sat:2", Role::Weight);
  q->eval();
  auto x = torch::tensor({-1.f, 0.f, 0.5f, 2.f});
  auto out = q->forward(x);
  EXPECT_TRUE(torch::equal(out, torch::tensor({-0.75f, 0.25f, 0.25f, 0.75f}))) << out;
  auto e = q->encode(x);
  EXPECT_TRUE(torch::equal(e.codes, torch::tensor({0, 2, 2, 3}, torch::kInt64))) << e.codes;
  // 3 bits: floor(8u) = {0, 4, 5, 8->7}: Q = (2c + 1) / 8 - 1 = {-.875, .125, .375, .875}
  auto q3 = make_quantizer("sat:3", Role::Weight);
  EXPECT_TRUE(torch::equal(q3->forward(x), torch::tensor({-0.875f, 0.125f, 0.375f, 0.875f})));
}

TEST(Sat, NestedCodesAreTopBits) {
  torch::manual_seed(3);
  auto w = torch::randn({32, 16, 3, 3}) * 0.2;
  std::vector<torch::Tensor> codes(9);
  for (int b = 1; b <= 8; ++b) codes[b] = make_quantizer("sat:" + std::to_string(b), Role::Weight)->encode(w).codes;
  for (int hi = 2; hi <= 8; ++hi)
    for (int lo = 1; lo < hi; ++lo) {
      auto top = torch::floor_divide(codes[hi], int64_t(1) << (hi - lo));
      EXPECT_TRUE(torch::equal(top, codes[lo])) << hi << " -> " << lo;
    }
  // Non-trivial: the 8-bit codes use most of their range, the 1-bit codes both values.
  EXPECT_GT(std::get<0>(torch::_unique(codes[8])).numel(), 200);
  EXPECT_EQ(std::get<0>(torch::_unique(codes[1])).numel(), 2);
}

TEST(Sat, RescaleGivesDocumentedVariance) {
  torch::manual_seed(5);
  for (auto shape : {std::vector<int64_t>{16, 8, 3, 3}, std::vector<int64_t>{10, 84}}) {
    double n_out = static_cast<double>(shape[0]) * (shape.size() == 4 ? shape[2] * shape[3] : 1);
    auto w = torch::randn(shape) * 0.1;
    for (int b : {2, 4, 8}) {
      auto q = make_quantizer("sat:" + std::to_string(b) + ":rescale", Role::Weight);
      auto out = q->forward(w).to(torch::kFloat64);
      double var = out.var(/*unbiased=*/false).item<double>();
      EXPECT_NEAR(var * n_out, 1.0, 1e-5) << b << " bits, n_out " << n_out;
      // Without rescale the levels stay in [-1, 1]; the rescaled tensor is exactly that times k.
      auto plain = make_quantizer("sat:" + std::to_string(b), Role::Weight)->forward(w).to(torch::kFloat64);
      EXPECT_LE(plain.abs().max().item<double>(), 1.0);
      const double k = 1.0 / std::sqrt(n_out * plain.var(/*unbiased=*/false).item<double>());
      EXPECT_TRUE(torch::allclose(out, plain * k, 1e-6, 1e-7)) << b;
    }
  }
}

TEST(Sat, EncodeReproducesForwardAndStorage) {
  torch::manual_seed(7);
  auto w = torch::randn({12, 40}) * 0.3;
  for (const char* spec : {"sat:1", "sat:3", "sat:5:rescale", "sat:8"}) {
    auto q = make_quantizer(spec, Role::Weight);
    q->eval();
    auto e = q->encode(w);
    EXPECT_TRUE(torch::equal(e.dequantize(), q->forward(w))) << spec;
    EXPECT_EQ(e.stored_bytes(), q->storage(w.sizes()).bytes()) << spec;
    EXPECT_EQ(q->storage(w.sizes()).bytes(), (480 * q->bits() + 7) / 8 + 4);
  }
}

TEST(Sat, GradientThroughTanhWithDetachedStatistics) {
  // d out / d x = k * (1 - tanh(x)^2) / max|tanh|, k = 1 without rescale (2^(1-b) * 2^b / 2 = 1).
  auto x = torch::tensor({-0.4f, 0.1f, 0.3f, 0.9f}, torch::requires_grad());
  auto q = make_quantizer("sat:4", Role::Weight);
  q->forward(x).sum().backward();
  auto t = torch::tanh(x.detach());
  auto expect = (1 - t * t) / t.abs().max();
  EXPECT_TRUE(torch::allclose(x.grad(), expect, 1e-6, 1e-6)) << x.grad() << expect;
}

TEST(Sat, EdgeCasesAndErrors) {
  auto q = make_quantizer("sat:4:rescale", Role::Weight);
  auto z = q->forward(torch::zeros({4, 3}));
  EXPECT_TRUE(torch::equal(z, torch::zeros({4, 3})));
  EXPECT_THROW(q->forward(torch::tensor({1.f, NAN})), std::domain_error);
  EXPECT_THROW(make_quantizer("sat:4:per_channel", Role::Weight), std::invalid_argument);
  EXPECT_THROW(make_quantizer("sat:4", Role::Activation), std::invalid_argument);
  EXPECT_THROW(make_quantizer("sat:9", Role::Weight), std::invalid_argument);
  EXPECT_THROW(make_quantizer("sat:4:rescale=2", Role::Weight), std::invalid_argument);
  EXPECT_THROW(q->quantize(torch::ones({3}), 9), std::invalid_argument);
  EXPECT_EQ(valid_bits(QuantSpec::parse("sat")), (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(Sat, CgPactCalibratedGradient) {
  // pact:2, alpha = 1: L = 3. x/alpha*L = {-1.5, .6, 1.8, 4.5}.
  // d/d alpha: 0 (x < 0), (round(.6) - .6)/3 = .1333, (round(1.8) - 1.8)/3 = .0667, 1 (x >= alpha) -> 1.2
  // d/d x: 1 inside [0, alpha), else 0. Same on the fused CPU kernel and the tensor-op composite.
  for (bool fused : {true, false}) {
    auto q = make_quantizer("pact:2:alpha=1", Role::Activation);
    q->set_fused(fused);
    auto x = torch::tensor({-0.5f, 0.2f, 0.6f, 1.5f}, torch::requires_grad());
    auto out = q->forward(x);
    EXPECT_TRUE(torch::allclose(out.detach(), torch::tensor({0.f, 1.f / 3, 2.f / 3, 1.f}))) << out;
    out.sum().backward();
    EXPECT_TRUE(torch::allclose(x.grad(), torch::tensor({0.f, 1.f, 1.f, 0.f}))) << x.grad();
    auto alpha = q->named_parameters()["alpha"];
    EXPECT_NEAR(alpha.grad().item<double>(), 0.4 / 3 + 0.2 / 3 + 1.0, 1e-5) << "fused " << fused;
  }
}
