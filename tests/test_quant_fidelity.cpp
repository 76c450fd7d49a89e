// Quantizer fidelity (issue #22): per scheme, the level set (number of distinct outputs within b bits) and
// the MSE on fixed Gaussian / Laplace tensors against stated bounds, so that a regression in a scale rule
// fails CI; and PoT against the reference PoT (AutoQNN-pytorch, written below in a few lines of torch).
// Run: autoqnn_tests --gtest_filter='*Fidelity*'
// Figures: docs/quantizers.md ("Fidelity"), scripts/pot_levelset_study.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "quantizers/registry.h"

using namespace autoqnn::quant;

namespace {

constexpr int64_t kN = 1 << 16;

// Fixed tensors (own generator seeds; the values only need to be fixed, not equal to Python's).
torch::Tensor tensor_of(const std::string& kind) {
  torch::manual_seed(2022);
  if (kind == "gauss") return torch::randn({kN});
  if (kind == "laplace") {  // inverse CDF of Laplace(0, 1)
    auto u = torch::rand({kN}) - 0.5;
    return -torch::sign(u) * torch::log1p(-2 * u.abs().clamp_max(0.4999999));
  }
  if (kind == "pruned") {  // Gaussian with 30 % exact zeros
    auto w = torch::randn({kN});
    w.index_put_({torch::randperm(kN).slice(0, 0, kN * 3 / 10)}, 0.0f);
    return w;
  }
  if (kind == "uniform") return torch::rand({kN}) * 2 - 1;
  throw std::runtime_error(kind);
}

double mse_rel(const torch::Tensor& w, const torch::Tensor& q) {
  auto wd = w.to(torch::kDouble), qd = q.detach().to(torch::kDouble);
  return (wd - qd).pow(2).mean().item<double>() / wd.var().item<double>();
}

size_t distinct(const torch::Tensor& t) { return std::get<0>(torch::_unique(t.detach().flatten())).numel(); }

// The reference PoT (docs: /work/shared/reference/quantizers.md; its exponent 0 maps to 2^-1, W = 0 to 0):
//   a = lambda_b std + 1e-7, e = clip(round(log2|W/a|), 0, 2^(b-1) - 1), out = sign(W) * (e ? 2^e : 1/2) * a
torch::Tensor reference_pot(const torch::Tensor& w, int b) {
  const double lam[4] = {1.0, 0.9, 0.4, 0.03};
  const double a = lam[b - 1] * w.std().item<double>() + 1e-7;
  auto e = torch::clamp(torch::round(torch::log2((w / a).abs())), 0, (1 << (b - 1)) - 1);
  auto m = torch::where(e == 0, torch::full_like(e, 0.5), torch::pow(2.0, e));
  return torch::sign(w) * m * a;
}

QuantizerPtr mk(const std::string& s) { return make_quantizer(s, Role::Weight); }

}  // namespace

// ------------------------------------------------------------------------------------------- PoT
// Done criterion of #22: PoT MSE <= the reference's at 2 and 3 bits on Gaussian and Laplace tensors and on
// the pruned tensor at 3 bits. Pruned at 2 bits cannot be met with 2-bit codes: the reference's output
// has 5 values there (W = 0 -> 0 besides +-a/2, +-2a), and the Lloyd-Max optimum of ANY 4-level quantizer of
// that tensor is above the reference's MSE (scripts/pot_levelset_study.py: 0.1322 vs 0.1292 of var); we
// bound it instead (ours 1.345x the reference there).
TEST(QuantFidelity, PotNotWorseThanReference) {
  for (const std::string kind : {"gauss", "laplace", "pruned", "uniform"}) {
    auto w = tensor_of(kind);
    for (int b = 2; b <= 3; ++b) {
      SCOPED_TRACE(kind + " pot:" + std::to_string(b));
      const double ref = mse_rel(w, reference_pot(w, b));
      const double ours = mse_rel(w, mk("pot:" + std::to_string(b))->forward(w));
      if (kind == "pruned" && b == 2) {
        EXPECT_EQ(distinct(reference_pot(w, b)), 5u);  // the reference needs 5 codes here
        EXPECT_LE(ours, 1.40 * ref);
      } else {
        EXPECT_LE(ours, ref) << "ours " << ours << " reference " << ref;
      }
    }
  }
}

TEST(QuantFidelity, PotLevelSets) {
  // Levels: R = +-a {1/2, 2, 4, .., 2^(E-1)} (2^b values) or Z = {0} U +-a {1, .., 2^(E-2)} (2^b - 1).
  for (const std::string kind : {"gauss", "pruned"}) {
    auto w = tensor_of(kind);
    for (int b = 1; b <= 4; ++b) {
      SCOPED_TRACE(kind + " pot:" + std::to_string(b));
      auto q = mk("pot:" + std::to_string(b));
      auto lv = q->levels(w).to(torch::kDouble);
      std::vector<double> v(lv.data_ptr<double>(), lv.data_ptr<double>() + lv.numel());
      ASSERT_LE(v.size(), size_t(1) << b);
      const bool has_zero = std::find(v.begin(), v.end(), 0.0) != v.end();
      std::set<double> mags;
      for (double x : v) if (x != 0) mags.insert(std::fabs(x));
      const double a = has_zero ? *mags.begin() : 2 * *mags.begin();
      std::vector<double> want;
      const int E = 1 << (b - 1);
      if (has_zero) for (int e = 0; e <= E - 2; ++e) want.push_back(std::ldexp(a, e));
      else { want.push_back(a / 2); for (int e = 1; e <= E - 1; ++e) want.push_back(std::ldexp(a, e)); }
      ASSERT_EQ(mags.size(), want.size());
      size_t i = 0;
      for (double m : mags) EXPECT_NEAR(m, want[i++], 1e-6 * m);
      EXPECT_EQ(v.size(), has_zero ? 2 * want.size() + 1 : 2 * want.size());
      auto out = q->forward(w);
      EXPECT_LE(distinct(out), v.size());
      if (kind == "pruned" && has_zero) {
        EXPECT_TRUE((out.index({w == 0}) == 0).all().item<bool>());
      }
    }
  }
}

// ------------------------------------------------------------------------------------------- every scheme
// MSE / var on the fixed tensors (kN elements), bounds = the measured value x 1.05 (measured at the commit
// that added this test). A lower bound as well: the Lloyd-Max optimum of a b-bit quantizer of N(0, 1)
// (0.3634, 0.1175, 0.03454, 0.009497 for 1..4 bits) less 3 % for sampling, below which a measurement is
// broken. Also: at most 2^b distinct outputs per tensor. Measured with libtorch 1.13 CPU (Debian).
namespace {
struct Case {
  const char* spec;
  int bits;
  double gauss, laplace;  // measured MSE / var
};
// clang-format off
const std::vector<Case> kCases = {
{"binary", 1, 0.363106, 0.498824},
{"twn", 2, 0.191270, 0.282114},
{"fixed:2", 2, 0.861865, 0.853111}, {"fixed:3", 3, 0.327184, 0.447106}, {"fixed:4", 4, 0.082874, 0.148801},
{"uniform:2", 2, 0.896550, 0.963136}, {"uniform:3", 3, 0.165967, 0.417762}, {"uniform:4", 4, 0.030590, 0.102567},
{"resq:2", 2, 0.129971, 0.228747}, {"resq:3", 3, 0.058167, 0.142020}, {"resq:4", 4, 0.032800, 0.094580},
{"vecq:2", 2, 0.118525, 0.196680}, {"vecq:3", 3, 0.037299, 0.079402}, {"vecq:4", 4, 0.011541, 0.035504},
{"mul2q:2", 2, 0.118509, 0.198267}, {"mul2q:3", 3, 0.037286, 0.082058}, {"mul2q:4", 4, 0.011545, 0.037272},
{"clipq:2", 2, 0.118525, 0.198239}, {"clipq:3", 3, 0.037299, 0.082255}, {"clipq:4", 4, 0.011541, 0.037440},
{"pot:2", 2, 0.120104, 0.176146}, {"pot:3", 3, 0.042495, 0.055313}, {"pot:4", 4, 0.037788, 0.039370},
{"esb:2:k=0", 2, 0.118525, 0.198240}, {"esb:3", 3, 0.037299, 0.082251}, {"esb:4", 4, 0.012646, 0.026648}, {"esb:4:k=0", 4, 0.037797, 0.039493},
{"apot:2", 2, 0.649855, 0.491592}, {"apot:3", 3, 0.061264, 0.071712}, {"apot:4", 4, 0.012984, 0.025129},
{"afp:3:e=1", 3, 0.327184, 0.447106}, {"afp:4:e=2", 4, 0.023044, 0.042415},
};
// clang-format on
const double kLloydMax[5] = {0, 0.3634, 0.1175, 0.03454, 0.009497};
}  // namespace

TEST(QuantFidelity, SchemeMseBounds) {
  auto g = tensor_of("gauss"), l = tensor_of("laplace");
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.spec);
    auto q = mk(c.spec);
    const double mg = mse_rel(g, q->forward(g)), ml = mse_rel(l, q->forward(l));
    std::printf("FIDELITY %-12s gauss %.6f laplace %.6f\n", c.spec, mg, ml);
    EXPECT_LE(distinct(q->forward(g)), size_t(1) << c.bits);
    EXPECT_LE(mg, c.gauss * 1.05);
    EXPECT_LE(ml, c.laplace * 1.05);
    EXPECT_GE(mg, kLloydMax[c.bits] * 0.97);
  }
}
