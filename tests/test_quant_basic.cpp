// Unit tests of the basic schemes: binary, twn, fixed, uniform, zoomq, pact, resq, vecq, mul2q, clipq.
// Hand-computed level sets, gradients, per-channel vs per-tensor, bit-exact encode, storage, edge cases.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "quantizers/registry.h"

using namespace autoqnn::quant;

namespace {

QuantizerPtr W(const std::string& s) { return make_quantizer(s, Role::Weight); }
QuantizerPtr A(const std::string& s) { return make_quantizer(s, Role::Activation); }

torch::Tensor T(std::vector<float> v) { return torch::tensor(v, torch::kFloat32); }

std::vector<float> vec(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat32).contiguous().flatten();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

int64_t distinct(const torch::Tensor& t) { return std::get<0>(torch::_unique(t.detach().flatten())).numel(); }

torch::Tensor gauss(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn(shape);
}

double mse(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).mean().item<double>(); }

torch::Tensor eval_out(Quantizer& q, const torch::Tensor& x) {
  bool was = q.is_training();
  q.eval();
  torch::NoGradGuard ng;
  auto y = q.forward(x);
  q.train(was);
  return y;
}

// Gradient of sum(w * q(x)) wrt x (training mode).
torch::Tensor grad_of(Quantizer& q, const torch::Tensor& x0) {
  auto x = x0.detach().clone().requires_grad_(true);
  auto y = q.forward(x);
  y.sum().backward();
  return x.grad();
}

// encode().dequantize() == eval forward (bit exact), codes in range, storage consistent.
void expect_encode_exact(Quantizer& q, const torch::Tensor& x, const std::string& what) {
  auto e = q.encode(x);
  auto y = eval_out(q, x);
  auto d = e.dequantize();
  EXPECT_TRUE(torch::equal(d, y)) << what << ": max diff " << (d - y).abs().max().item<float>();
  EXPECT_EQ(q.storage(x.sizes()).bytes(), e.stored_bytes()) << what;
  EXPECT_GE(e.codes.min().item<int64_t>(), 0) << what;
  EXPECT_LT(e.codes.max().item<int64_t>(), int64_t(1) << e.code_bits) << what;
  EXPECT_EQ(e.codes.scalar_type(), torch::kInt64);
}

struct Case {
  const char* spec;
  bool weight, act;
  bool offset_free_zero;  // all-zero input -> exactly zero output
};

// Every spec of this file's schemes (a typical bitwidth each).
const std::vector<std::string>& weight_specs() {
  static const std::vector<std::string> v = {"binary", "twn",    "fixed:4",  "uniform:4", "uniform:4:asym",
                                             "zoomq:3", "resq:3", "vecq:3", "mul2q:3",   "clipq:3"};
  return v;
}
const std::vector<std::string>& act_specs() {
  static const std::vector<std::string> v = {"twn",     "fixed:4", "uniform:4", "uniform:4:asym",
                                             "zoomq:3", "pact:3",  "resq:2"};
  return v;
}

// The quantizer with its fused kernels off (the composite tensor-op path).
QuantizerPtr composite(QuantizerPtr q) {
  q->set_fused(false);
  return q;
}

}  // namespace

// ---------------------------------------------------------------- hand-computed level sets
TEST(QuantBasicBinary, LevelsAndSignOfZero) {
  auto q = W("binary");
  auto y = eval_out(*q, T({-2, -1, 0, 1, 3}));  // mean|x| = 1.4
  EXPECT_EQ(vec(y), (std::vector<float>{-1.4f, -1.4f, 1.4f, 1.4f, 1.4f}));
  auto yb = eval_out(*q, gauss({4096}, 1));
  EXPECT_LE(distinct(yb), 2);
  EXPECT_TRUE(torch::allclose(eval_out(*q, yb), yb, 1e-6, 0));  // idempotent: mean|+-a| = a (up to rounding)
  auto e = q->encode(T({-2, -1, 0, 1, 3}));
  EXPECT_EQ(e.code_bits, 1);
  EXPECT_FALSE(e.table.defined());
  EXPECT_EQ(q->storage({5}).bytes(), 1 + 4);
}

TEST(QuantBasicTernary, TwnLevels) {
  auto q = W("twn");
  // mean|x| = 6.7/6, delta = 0.7817; |x| > delta: -3, -1, 2 -> alpha = 2.
  auto x = T({-3, -1, -0.2f, 0, 0.5f, 2});
  EXPECT_EQ(vec(eval_out(*q, x)), (std::vector<float>{-2, -2, 0, 0, 0, 2}));
  EXPECT_LE(distinct(eval_out(*q, gauss({4096}, 2))), 3);
  // idempotent: {-a, 0, a} maps to itself
  auto y = eval_out(*q, gauss({1000}, 3));
  EXPECT_TRUE(torch::allclose(eval_out(*q, y), y, 1e-6, 0));
  auto lv = q->levels(x);
  EXPECT_EQ(vec(lv), (std::vector<float>{-2, 0, 2}));
}

TEST(QuantBasicFixed, PowerOfTwoStepAndClip) {
  auto q = W("fixed:4");
  // max|x| = 0.9 -> floor(log2 0.9) = -1 -> e = -1 - 2 = -3, step 1/8, codes in [-8, 7].
  auto x = T({0.3f, -0.9f, 0.6f, 0.0625f, 0.1875f});
  EXPECT_EQ(vec(eval_out(*q, x)), (std::vector<float>{0.25f, -0.875f, 0.625f, 0.f, 0.25f}));
  // Reference bug fixed: 0.99 / 0.125 = 7.92 rounds to 8, which must clip to code 7.
  auto y = eval_out(*q, T({0.99f, -0.99f, 0.5f}));
  EXPECT_EQ(vec(y), (std::vector<float>{0.875f, -1.0f, 0.5f}));
  auto e = q->encode(T({0.99f, -0.99f, 0.5f}));
  EXPECT_EQ(e.grid_base, -8);
  EXPECT_FLOAT_EQ(e.scale.item<float>(), 0.125f);
  // levels: all 16 multiples of 1/8 in [-1, 0.875]
  auto lv = q->levels(x);
  EXPECT_EQ(lv.numel(), 16);
  EXPECT_FLOAT_EQ(lv[0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(lv[15].item<float>(), 0.875f);
  // idempotent while the most negative code -2^(b-1) is unused (max|q| keeps the exponent): x in (-0.9375, 1)
  auto g = eval_out(*q, torch::rand({3000}) * 1.9 - 0.93);
  EXPECT_TRUE(torch::equal(eval_out(*q, g), g));
  // Exact power of two max: floor(log2 1.0) = 0 -> step 2^-2 at 4 bits.
  EXPECT_FLOAT_EQ(q->encode(T({1.0f, -0.3f})).scale.item<float>(), 0.25f);
}

TEST(QuantBasicUniform, SymmetricAndAsymmetricLevels) {
  auto q = W("uniform:3");  // N = 3, s = 1.5 / 3
  EXPECT_EQ(vec(eval_out(*q, T({-1.5f, -0.4f, 0.2f, 0.7f, 1.5f}))),
            (std::vector<float>{-1.5f, -0.5f, 0.f, 0.5f, 1.5f}));
  auto qa = W("uniform:2:asym");  // range [-1, 2], s = 1, zero point 1, off = -1
  auto x = T({-1, 0, 0.4f, 2});
  EXPECT_EQ(vec(eval_out(*qa, x)), (std::vector<float>{-1, 0, 0, 2}));
  auto e = qa->encode(x);
  EXPECT_EQ(vec(e.codes.to(torch::kFloat32)), (std::vector<float>{0, 1, 1, 3}));
  EXPECT_FLOAT_EQ(e.offset.item<float>(), -1.f);
  // zero stays exact with an asymmetric range
  auto g = gauss({2000}, 4) + 0.7;
  auto y = eval_out(*qa, torch::cat({g, torch::zeros({1})}));
  EXPECT_EQ(y[-1].item<float>(), 0.f);
  EXPECT_LE(distinct(y), 4);
  // idempotence (up to the last ulp of the recomputed scale)
  auto qs = W("uniform:5");
  auto z = eval_out(*qs, gauss({3000}, 5));
  EXPECT_TRUE(torch::allclose(eval_out(*qs, z), z, 1e-6, 1e-7));
}

TEST(QuantBasicZoomQ, LevelsAndConstants) {
  auto q = W("zoomq:2");
  const float a = static_cast<float>(4.0 / (4 - 1e-4) + 1e-7);
  auto y = vec(eval_out(*q, T({0, 1, 2, 3, 4})));
  std::vector<float> want = {0.5f * a, 0.5f * a, 1.5f * a, 2.5f * a, 3.5f * a};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
  // every level inside [min, max]
  auto g = gauss({5000}, 6);
  auto lv = q->levels(g);
  EXPECT_EQ(lv.numel(), 4);
  EXPECT_GE(lv.min().item<float>(), g.min().item<float>());
  EXPECT_LE(lv.max().item<float>(), g.max().item<float>());
  // constant / all-zero tensors
  EXPECT_TRUE(torch::equal(eval_out(*q, torch::zeros({7})), torch::zeros({7})));
  EXPECT_NEAR(eval_out(*q, torch::full({5}, 2.5f))[0].item<float>(), 2.5f, 1e-6);
}

TEST(QuantBasicPact, LevelsAndCalibratedGradient) {
  auto q = A("pact:2:alpha=3");  // L = 3, s = 1
  auto x = T({-1, 0, 0.4f, 1.6f, 2.5f, 3, 5});
  EXPECT_EQ(vec(eval_out(*q, x)), (std::vector<float>{0, 0, 0, 2, 2, 3, 3}));
  q->train();
  auto params = q->named_parameters();
  ASSERT_EQ(params.size(), 1u);
  auto alpha = params["alpha"];
  for (bool fused : {true, false}) {
    q->set_fused(fused);
    if (alpha.grad().defined()) alpha.mutable_grad().zero_();
    auto xg = x.clone().requires_grad_(true);
    q->forward(xg).sum().backward();
    EXPECT_EQ(vec(xg.grad()), (std::vector<float>{0, 1, 1, 1, 1, 0, 0})) << fused;
    // d/dalpha: 0 (x<0), 0 (x=0), (0-0.4)/3, (2-1.6)/3, (2-2.5)/3, 1 (x>=alpha), 1
    EXPECT_NEAR(alpha.grad().item<float>(), 2.0 - 0.5 / 3, 1e-6) << fused;
  }
  q->set_fused(true);
  // unsigned levels, <= 2^b values
  auto y = eval_out(*q, gauss({4000}, 7) * 3);
  EXPECT_GE(y.min().item<float>(), 0.f);
  EXPECT_LE(distinct(y), 4);
  // calibration: 99.9th percentile of 1..1000 is 999
  auto qc = A("pact:4");
  qc->calibrate(torch::arange(1, 1001, torch::kFloat32));
  EXPECT_FLOAT_EQ(qc->named_parameters()["alpha"].item<float>(), 999.f);
  qc->calibrate(torch::arange(1, 1001, torch::kFloat32) * 3);  // running mean over batches: (999 + 2997) / 2
  EXPECT_FLOAT_EQ(qc->named_parameters()["alpha"].item<float>(), 1998.f);
  EXPECT_THROW(A("pact:4:per_channel"), std::invalid_argument);
  EXPECT_THROW(A("pact:4:alpha=0"), std::invalid_argument);
}

TEST(QuantBasicResQ, LevelsAndTable) {
  auto q = W("resq:2");
  // a1 = mean|x| = 2 -> {-2,-2,2,2}; residual {-1,1,-1,1}, a2 = 1 -> {-3,-1,1,3}
  auto x = T({-3, -1, 1, 3});
  EXPECT_EQ(vec(eval_out(*q, x)), (std::vector<float>{-3, -1, 1, 3}));
  auto e = q->encode(x);
  ASSERT_TRUE(e.table.defined());
  EXPECT_EQ(vec(std::get<0>(torch::sort(e.table))), (std::vector<float>{-3, -1, 1, 3}));
  EXPECT_EQ(q->storage({4}).bytes(), 1 + 4 * (4 + 1));
  EXPECT_LE(distinct(eval_out(*W("resq:3"), gauss({5000}, 8))), 8);
}

TEST(QuantBasicResQ, ActivationAlphasNotOffByOne) {
  auto q = A("resq:2");
  auto x = T({-3, -1, 1, 3});
  q->train();
  auto y_train = q->forward(x);
  auto bufs = q->named_buffers();
  EXPECT_FLOAT_EQ(bufs["alphas"][0].item<float>(), 2.f);  // a_1 at index 0
  EXPECT_FLOAT_EQ(bufs["alphas"][1].item<float>(), 1.f);  // a_2 at index 1
  EXPECT_TRUE(torch::equal(eval_out(*q, x), y_train.detach()));
}

TEST(QuantBasicVecQ, HalfIntegerLevelsLeastSquaresScale) {
  auto q = W("vecq:1");
  // std = sqrt(10/3), a = std: c = {-.5, -.5, .5, .5}, s = <x,c>/<c,c> = 3
  EXPECT_EQ(vec(eval_out(*q, T({-2, -1, 1, 2}))), (std::vector<float>{-1.5f, -1.5f, 1.5f, 1.5f}));
  // b = 3 against the formula in double precision
  auto x = gauss({4000}, 9);
  auto xd = x.to(torch::kFloat64);
  const double a = 0.5860 * xd.std().item<double>() + 1e-7;
  auto c = torch::round(xd / a - 0.5).clamp(-4, 3) + 0.5;
  const double s = (xd * c).sum().item<double>() / (c * c).sum().item<double>();
  auto q3 = W("vecq:3");
  auto y = eval_out(*q3, x);
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat64), c * s, 1e-5, 1e-6));
  // least squares: the scale minimises ||x - s c||
  auto err = [&](double sc) { return (xd - c * sc).pow(2).sum().item<double>(); };
  EXPECT_LT(err(s), err(s * 1.01));
  EXPECT_LT(err(s), err(s * 0.99));
  auto lv = q3->levels(x);
  EXPECT_EQ(lv.numel(), 8);
  auto e = q3->encode(x);
  EXPECT_EQ(e.grid_base, -3.5);
}

TEST(QuantBasicMul2Q, KeepsHalfIntegerLevels) {
  auto q = W("mul2q:1");
  // beta = 2.5, alpha = 1.59502 * sqrt(5/3): levels beta -+ alpha / 2
  const double alpha = 1.59502 * std::sqrt(5.0 / 3.0);
  auto y = vec(eval_out(*q, T({1, 2, 3, 4})));
  EXPECT_NEAR(y[0], 2.5 - alpha / 2, 1e-5);
  EXPECT_NEAR(y[1], 2.5 - alpha / 2, 1e-5);
  EXPECT_NEAR(y[2], 2.5 + alpha / 2, 1e-5);
  EXPECT_NEAR(y[3], 2.5 + alpha / 2, 1e-5);
  // b = 2: four levels beta + {-1.5, -0.5, 0.5, 1.5} alpha (no level at the mean)
  auto x = gauss({4000}, 10) * 0.1 + 0.3;
  auto q2 = W("mul2q:2");
  auto e = q2->encode(x);
  EXPECT_EQ(e.grid_base, -1.5);
  auto lv = vec(q2->levels(x));
  ASSERT_EQ(lv.size(), 4u);
  const float step = lv[1] - lv[0];
  EXPECT_NEAR((lv[1] + lv[2]) / 2, e.offset.item<float>(), 1e-6);
  EXPECT_NEAR(lv[3] - lv[2], step, 1e-6);
  // constant tensor reproduced exactly
  EXPECT_TRUE(torch::equal(eval_out(*q2, torch::full({6}, 0.375f)), torch::full({6}, 0.375f)));
}

TEST(QuantBasicClipQ, ClippedStraightThrough) {
  auto x = torch::cat({gauss({999}, 11), T({100})});
  for (const char* spec : {"clipq:2", "clipq:2:grad=ste"}) {
    auto q = W(spec);
    q->train();
    auto g = grad_of(*q, x);
    EXPECT_EQ(g[-1].item<float>(), 0.f) << spec;  // the outlier is outside the level range
    EXPECT_EQ(g[0].item<float>(), 1.f) << spec;
    auto lv = q->levels(x);
    EXPECT_EQ(lv.numel(), 4);
    EXPECT_NEAR((lv[3] / lv[2]).item<float>(), 3.f, 1e-5);  // 1.5a / 0.5a
  }
}

// ---------------------------------------------------------------- generic properties
TEST(QuantBasicAll, DistinctOutputsAtMost2PowB) {
  auto x = gauss({20000}, 12);
  for (const auto& s : weight_specs()) {
    auto q = W(s);
    int64_t limit = s == "twn" ? 3 : (int64_t(1) << q->bits());
    EXPECT_LE(distinct(eval_out(*q, x)), limit) << s;
  }
  for (const auto& s : act_specs()) {
    auto q = A(s);
    q->train();
    q->forward(x);
    int64_t limit = s == "twn" ? 3 : (int64_t(1) << q->bits());
    EXPECT_LE(distinct(eval_out(*q, x)), limit) << s;
  }
}

TEST(QuantBasicAll, MseFallsWithBits) {
  auto x = gauss({20000}, 13);
  auto relu = x.clamp_min(0);
  struct R {
    const char* scheme;
    int lo, hi;
    bool act;
  };
  for (R r : {R{"uniform", 2, 8, false}, R{"uniform:asym", 2, 8, false}, R{"fixed", 2, 8, false},
              R{"zoomq", 2, 8, false}, R{"resq", 1, 6, false}, R{"vecq", 1, 8, false}, R{"mul2q", 1, 8, false},
              R{"clipq", 2, 8, false}, R{"pact:alpha=3", 2, 8, true}}) {
    double prev = 1e30;
    std::string name = r.scheme;
    auto colon = name.find(':');
    std::string base = name.substr(0, colon), extra = colon == std::string::npos ? "" : name.substr(colon);
    for (int b = r.lo; b <= r.hi; ++b) {
      auto spec = base + ":" + std::to_string(b) + extra;
      auto q = r.act ? A(spec) : W(spec);
      const auto& in = r.act ? relu : x;
      double m = mse(eval_out(*q, in), in);
      EXPECT_LT(m, prev) << spec;
      prev = m;
    }
  }
  // 8-bit uniform on a Gaussian: error close to step^2 / 12
  auto q8 = W("uniform:8");
  const double step = x.abs().max().item<double>() / 127;
  EXPECT_NEAR(mse(eval_out(*q8, x), x), step * step / 12, 0.2 * step * step / 12);
}

TEST(QuantBasicAll, EncodeIsBitExactAndStorageMatches) {
  auto x = gauss({6, 5, 3, 3}, 14) * 0.05;
  for (const auto& s : weight_specs()) {
    expect_encode_exact(*W(s), x, s);
    expect_encode_exact(*W(s + ":per_channel"), x, s + ":per_channel");
    expect_encode_exact(*W(s + ":per_channel:axis=1"), x, s + ":per_channel:axis=1");
    expect_encode_exact(*composite(W(s + ":per_channel")), x, s + " composite");  // the composite path is exact too
    // non-contiguous input (composite path on CPU)
    auto xt = x.transpose(0, 1);
    expect_encode_exact(*W(s), xt, s + " transposed");
  }
  auto a = gauss({4, 3, 5, 5}, 15);
  for (const auto& s : act_specs()) {
    auto q = A(s);
    q->train();
    q->forward(a);
    q->forward(a * 1.5);
    expect_encode_exact(*q, a, s + " act");
    EXPECT_TRUE(q->is_training()) << s;  // encode restores the mode
    if (s.rfind("pact", 0) == 0) continue;
    auto qc = A(s + ":per_channel:axis=1");
    qc->train();
    qc->forward(a);
    expect_encode_exact(*qc, a * 0.7, s + " act per_channel");
  }
}

TEST(QuantBasicAll, PerChannelEqualsPerTensorPerChannel) {
  auto x = gauss({4, 6, 3}, 16);
  x[2].mul_(5);  // channels with different ranges
  for (const auto& s : weight_specs()) {
    for (int axis : {0, 1}) {
      auto qc = W(s + ":per_channel:axis=" + std::to_string(axis));
      auto yc = eval_out(*qc, x);
      for (int64_t c = 0; c < x.size(axis); ++c) {
        auto xc = x.select(axis, c).contiguous();
        auto yt = eval_out(*W(s), xc);
        EXPECT_TRUE(torch::allclose(yc.select(axis, c), yt, 1e-5, 1e-6)) << s << " axis " << axis << " ch " << c;
      }
    }
  }
  // max-based schemes: exactly equal
  for (const char* s : {"uniform:4", "fixed:5", "uniform:3:asym"}) {
    auto yc = eval_out(*W(std::string(s) + ":per_channel"), x);
    for (int64_t c = 0; c < 4; ++c) EXPECT_TRUE(torch::equal(yc[c], eval_out(*W(s), x[c].contiguous()))) << s;
  }
}

TEST(QuantBasicAll, StraightThroughGradients) {
  // Weights: STE gives exactly 1 everywhere.
  auto x = gauss({500}, 17);
  for (const auto& s : weight_specs()) {
    if (s.rfind("clipq", 0) == 0) continue;  // always clipped
    auto q = W(s);
    q->train();
    EXPECT_TRUE(torch::equal(grad_of(*q, x), torch::ones_like(x))) << s;
  }
  // PWL_C: 1 inside the level range, 0 outside. Fixed 4 bits: range [-1, 0.875] for max|x| = 0.99.
  auto xf = T({0.99f, -0.99f, 0.5f, 0.9f, 0.875f});
  auto qf = W("fixed:4:grad=pwl_c");
  qf->train();
  EXPECT_EQ(vec(grad_of(*qf, xf)), (std::vector<float>{0, 1, 1, 0, 1}));
  auto qfs = W("fixed:4");
  qfs->train();
  EXPECT_EQ(vec(grad_of(*qfs, xf)), (std::vector<float>{1, 1, 1, 1, 1}));
  // TWN: alpha = 2 -> |x| > 2 gets 0
  auto qt = W("twn:grad=pwl_c");
  qt->train();
  EXPECT_EQ(vec(grad_of(*qt, T({-3, -1, -0.2f, 0, 0.5f, 2}))), (std::vector<float>{0, 1, 1, 1, 1, 1}));
  // Activations in eval with a running range: outside values get 0 with PWL_C, 1 with STE.
  for (const char* s : {"uniform:4", "uniform:4:asym", "fixed:4", "zoomq:4"}) {
    auto qa = A(std::string(s) + ":grad=pwl_c");
    qa->train();
    qa->forward(T({-1, -0.5f, 0, 0.5f, 1}));
    qa->eval();
    auto g = grad_of(*qa, T({-3, 0.25f, 3}));
    EXPECT_EQ(vec(g), (std::vector<float>{0, 1, 0})) << s;
    auto qs = A(s);
    qs->train();
    qs->forward(T({-1, -0.5f, 0, 0.5f, 1}));
    qs->eval();
    EXPECT_EQ(vec(grad_of(*qs, T({-3, 0.25f, 3}))), (std::vector<float>{1, 1, 1})) << s;
  }
  // Statistics are detached: the gradient does not depend on other elements.
  auto q = W("uniform:4");
  q->train();
  auto xs = x.clone().requires_grad_(true);
  auto y = q->forward(xs);
  (y * y).sum().backward();
  EXPECT_TRUE(torch::allclose(xs.grad(), 2 * y.detach()));
}

TEST(QuantBasicAll, PwlRatioMixesOnlyInTraining) {
  auto q = W("uniform:3:grad=pwl:r=0.25");
  auto x = gauss({300}, 18);
  auto y_eval = eval_out(*q, x);
  q->train();
  auto xg = x.clone().requires_grad_(true);
  auto y = q->forward(xg);
  EXPECT_TRUE(torch::allclose(y.detach(), y_eval + 0.25 * (x - y_eval), 1e-5, 1e-6));
  y.sum().backward();
  EXPECT_TRUE(torch::equal(xg.grad(), torch::ones_like(x)));
}

TEST(QuantBasicAll, FusedMatchesComposite) {
  auto x = gauss({8, 4, 3, 3}, 19);
  auto run = [&](const std::string& s, Role role, bool fused, torch::Tensor* grad) {
    auto q = make_quantizer(s, role);
    q->set_fused(fused);
    q->train();
    auto xg = x.clone().requires_grad_(true);
    auto y = q->forward(xg);
    (y * torch::arange(y.numel()).reshape(y.sizes()).to(torch::kFloat32).sin()).sum().backward();
    *grad = xg.grad();
    auto ye = eval_out(*q, x);
    return torch::stack({y.detach(), ye});
  };
  std::vector<std::pair<std::string, Role>> all;
  for (const auto& s : weight_specs()) {
    all.push_back({s, Role::Weight});
    all.push_back({s + ":per_channel:grad=pwl_c", Role::Weight});
  }
  for (const auto& s : act_specs()) all.push_back({s + ":grad=pwl_c", Role::Activation});
  for (const auto& [s, role] : all) {
    torch::Tensor g1, g2;
    auto y1 = run(s, role, true, &g1);
    auto y2 = run(s, role, false, &g2);
    EXPECT_TRUE(torch::allclose(y1, y2, 1e-5, 1e-6)) << s << " max diff " << (y1 - y2).abs().max().item<float>();
    EXPECT_TRUE(torch::allclose(g1, g2, 1e-5, 1e-6)) << s;
  }
}

TEST(QuantBasicAll, ZeroAndConstantInputs) {
  auto z = torch::zeros({3, 4});
  for (const auto& s : weight_specs()) {
    for (const std::string& suffix : {std::string(), std::string(":per_channel")}) {
      auto q = W(s + suffix);
      auto y = eval_out(*q, z);
      EXPECT_TRUE(torch::equal(y, z)) << s << suffix;
      q->train();
      auto g = grad_of(*q, z);
      EXPECT_TRUE(torch::isfinite(g).all().item<bool>()) << s;
      expect_encode_exact(*q, z, s + " zeros");
    }
  }
  for (const auto& s : act_specs()) {
    auto q = A(s);
    q->train();
    EXPECT_TRUE(torch::equal(q->forward(z).detach(), z)) << s;
    EXPECT_TRUE(torch::equal(eval_out(*q, z), z)) << s;
  }
  // constant tensors: finite, and the documented values
  auto c = torch::full({10}, 0.75f);
  for (const auto& s : weight_specs()) {
    auto y = eval_out(*W(s), c);
    ASSERT_TRUE(torch::isfinite(y).all().item<bool>()) << s;
    const float want = s.rfind("clipq", 0) == 0 ? 0.f : 0.75f;  // ClipQ's step is lambda * std = 0
    EXPECT_NEAR(y[0].item<float>(), want, 1e-6) << s;
    EXPECT_EQ(distinct(y), 1) << s;
  }
  for (const char* s : {"binary", "twn", "fixed:8", "resq:3", "mul2q:4"})
    EXPECT_TRUE(torch::equal(eval_out(*W(s), c), c)) << s;  // exact
  EXPECT_TRUE(torch::isfinite(eval_out(*A("pact:4"), c)).all().item<bool>());
  // a single element (unbiased std undefined) is fine too
  for (const auto& s : weight_specs())
    EXPECT_TRUE(torch::isfinite(eval_out(*W(s), T({0.3f}))).all().item<bool>()) << s;
  // empty tensors
  for (const auto& s : weight_specs()) {
    auto q = W(s);
    auto e = q->encode(torch::zeros({0, 3}));
    EXPECT_EQ(q->storage({0, 3}).bytes(), e.stored_bytes()) << s;
    EXPECT_EQ(q->forward(torch::zeros({0, 3})).numel(), 0) << s;
  }
}

TEST(QuantBasicAll, NanInputThrows) {
  auto x = gauss({50}, 20);
  x[7] = std::numeric_limits<float>::quiet_NaN();
  for (const auto& s : weight_specs()) {
    EXPECT_THROW(W(s)->forward(x), std::domain_error) << s;
    EXPECT_THROW(W(s + ":per_channel")->forward(x.reshape({5, 10})), std::domain_error) << s;
    EXPECT_THROW(W(s)->encode(x), std::domain_error) << s;
    EXPECT_THROW(composite(W(s))->forward(x), std::domain_error) << s << " composite";
  }
  for (const auto& s : act_specs()) {
    auto q = A(s);
    q->train();
    EXPECT_THROW(q->forward(x), std::domain_error) << s;
    q->forward(gauss({50}, 21));
    q->eval();
    EXPECT_THROW(q->forward(x), std::domain_error) << s << " eval";
    q->set_fused(false);
    EXPECT_THROW(q->forward(x), std::domain_error) << s << " eval composite";
  }
  auto xi = gauss({50}, 22);
  xi[3] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(W("uniform:4")->forward(xi), std::domain_error);
}

TEST(QuantBasicAll, ActivationRunningStatistics) {
  // uniform: EMA of max|x| with momentum 0.9: 1 then 0.9 * 1 + 0.1 * 3 = 1.2
  auto q = A("uniform:8");
  auto names = q->named_buffers();
  EXPECT_TRUE(names.contains("max_abs"));
  EXPECT_TRUE(names.contains("max_abs_init"));
  q->train();
  q->forward(T({-1, 0.5f}));
  q->forward(T({3, 0.5f}));
  EXPECT_FLOAT_EQ(q->encode(T({0.1f})).scale.item<float>(), 1.2f / 127);
  // eval before any training batch uses the batch statistic
  auto q2 = A("fixed:4");
  EXPECT_EQ(vec(eval_out(*q2, T({0.3f, -0.9f}))), (std::vector<float>{0.25f, -0.875f}));
  // eval uses the running value, not the batch: max 4 seen in training -> step 2^(2-2) = 1 at 4 bits
  q2->train();
  q2->forward(T({4, -1}));
  EXPECT_EQ(vec(eval_out(*q2, T({0.3f, 0.7f}))), (std::vector<float>{0, 1}));
  // twn act: running delta / alpha
  auto qt = A("twn");
  qt->train();
  qt->forward(T({-3, -1, -0.2f, 0, 0.5f, 2}));  // delta 0.7817, alpha 2
  EXPECT_EQ(vec(eval_out(*qt, T({0.7f, 0.8f, -5}))), (std::vector<float>{0, 2, -2}));
  // zoomq act: running min / max
  auto qz = A("zoomq:2");
  qz->train();
  qz->forward(T({0, 4}));
  auto y = vec(eval_out(*qz, T({-10, 10})));
  const float a = static_cast<float>(4.0 / (4 - 1e-4) + 1e-7);
  EXPECT_FLOAT_EQ(y[0], 0.5f * a);
  EXPECT_FLOAT_EQ(y[1], 3.5f * a);
}

TEST(QuantBasicAll, BitsAndRoles) {
  EXPECT_THROW(W("uniform:4")->quantize(gauss({10}, 23), 40), std::invalid_argument);
  EXPECT_THROW(W("binary")->quantize(gauss({10}, 23), 2), std::invalid_argument);
  // QPL-style neighbouring bitwidths
  auto q = W("uniform:4");
  auto x = gauss({1000}, 24);
  EXPECT_LE(distinct(q->quantize(x, 3)), 8);
  EXPECT_LE(distinct(q->quantize(x, 5)), 32);
  EXPECT_THROW(W("uniform:4:asym=1"), std::invalid_argument);
  EXPECT_THROW(make_quantizer("binary", Role::Activation), std::invalid_argument);
  // storage accounting for a conv weight
  auto s = storage_cost(QuantSpec::parse("uniform:4:per_channel"), {64, 32, 3, 3});
  EXPECT_EQ(s.bytes(), 64 * 32 * 9 / 2 + 4 * 64);
  EXPECT_EQ(storage_cost(QuantSpec::parse("resq:2"), {10}).bytes(), 3 + 4 * 5);
}
