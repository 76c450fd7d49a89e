// PoT: powers of two (issue #22: level set and scale chosen by measurement; no longer the reference's rule).
// Two b-bit level sets (E = 2^(b-1) magnitudes per sign available):
//   R: +-a {2^-1, 2^1, 2^2, .., 2^(E-1)}        2^b levels, no zero. The reference's set (its exponent 0
//      maps to 2^-1); at b = 2 the magnitude ratio 4 is much closer to the Gaussian Lloyd-Max ratio (3.33)
//      than the {1, 2} of the plain set +-a {2^0..2^(E-1)}, and it is at least as good at b = 3, 4.
//   Z: {0} U +-a {2^0, .., 2^(E-2)}             2^b - 1 levels, with zero: the PoT set of the papers
//      (INQ / APoT's "PoT"), one magnitude fewer; the codes fit in b bits. Exact zeros (pruned weights) cost
//      nothing; b = 2 is ternary.
//   b = 1: R only (+-a/2).
// Scale a (per tensor, or per channel): the least-squares fit of the level set: start at a = lambda * std
// (lambda = the unit-Gaussian optimum of the set, nearest rounding), then Lloyd iterations on the scale
// (assign the nearest level; a = <W, c> / <c, c>), each of which cannot raise the squared error. The set
// with the lower total squared error is used for the whole tensor (ties -> R).
// Rounding: the nearest level (arithmetic midpoints; MSE-optimal for given levels), not the reference's
// log-domain rounding. Both element-wise paths use the level table (pow2.h), so fused == composite.
// The reference (docs: /work/shared/reference/quantizers.md) uses R with a = lambda_b std, lambda = 1, .9,
// .4, .03, log-domain rounding and maps W = 0 to 0 (a 2^b + 1-th level that its b-bit codes cannot hold).
// Figures: docs/quantizers.md (PoT), scripts/pot_levelset_study.py; CI: tests/test_quant_fidelity.cpp.
// Constant channels (std = 0): a = |value| / (top magnitude), exact; all-zero: Z (exact zeros).
// Backward: STE (gradient 1 for W; grad=pwl_c clips to the level range); the fitted scale is detached.
#include <cmath>
#include <stdexcept>

#include "quantizers/pow2.h"

namespace autoqnn::quant {

// b-bit codes + the (at most) 2^b level table + a per channel.
StorageCost storage_pot(const QuantSpec& spec, at::IntArrayRef shape, Role) {
  return storage_of(spec, shape, 1, int64_t(1) << spec.bits);
}

namespace {

// Non-negative magnitudes of the two sets (Z includes 0).
std::vector<double> pot_mags(int bits, bool zero) {
  const int E = 1 << (bits - 1);
  std::vector<double> m;
  if (zero) {
    m.push_back(0.0);
    for (int e = 0; e <= E - 2; ++e) m.push_back(std::ldexp(1.0, e));
  } else {
    m.push_back(0.5);
    for (int e = 1; e <= E - 1; ++e) m.push_back(std::ldexp(1.0, e));
  }
  return m;
}

// a / std of the unit-Gaussian MSE optimum of the set with nearest rounding (starting point of the fit;
// fitted on 2^20 N(0,1) samples by scripts/pot_levelset_study.py's fit_alpha).
double pot_lambda(int bits, bool zero) {
  static const double r[4] = {1.5961, 0.7534, 0.2762, 0.0325};
  static const double z[4] = {0.0, 1.2231, 0.5190, 0.0656};
  return zero ? z[bits - 1] : r[bits - 1];
}

constexpr int kLloydIters = 16;
constexpr int64_t kFitSamples = 65536;

class PotQuantizer final : public pow2::Pow2Quantizer {
 public:
  using Pow2Quantizer::Pow2Quantizer;

  torch::Tensor quantize(const torch::Tensor& x, int bits) override { return fake_quant(x, plan(x, bits)); }
  Encoded encode(const torch::Tensor& x) override {
    Encoded e = encode_plan(x, plan(x, bits()), bits());
    // The set with zero has 2^b - 1 levels; the stored table always has 2^b entries, as storage_pot counts
    // (the accounting cannot depend on the data): padded with a copy of its last level, which no code uses.
    const int64_t n = int64_t(1) << bits();
    if (e.table.defined() && e.table.dim() == 1 && e.table.size(0) < n)
      e.table = torch::cat({e.table, e.table.narrow(0, e.table.size(0) - 1, 1).expand({n - e.table.size(0)})});
    return e;
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_pot(spec_, shape, role_); }

 private:
  void check_bits(int bits) const {
    if (bits < 1 || bits > 4)
      throw std::invalid_argument(prefix() + "pot supports 1..4 bits, got " + std::to_string(bits));
  }

  struct Fit {
    std::vector<double> a;
    double sse = 0;
  };

  // Least-squares scale per row of `rows` ([C, n], double, CPU) for the signed level set of `mags`.
  static Fit fit(const torch::Tensor& rows, const std::vector<double>& mags, double lam,
                 const std::vector<double>& sd, const std::vector<double>& mu) {
    const int64_t C = rows.size(0);
    const auto lvv = pow2::signed_levels(mags);
    auto lv = torch::tensor(lvv, torch::kDouble);
    auto bd = (lv.slice(0, 1) + lv.slice(0, 0, -1)) * 0.5;
    Fit f;
    f.a.resize(C);
    for (int64_t c = 0; c < C; ++c)
      f.a[c] = sd[c] > 0 ? sd[c] * lam : (mu[c] != 0 ? std::fabs(mu[c]) / mags.back() : 1e-7);
    auto A = torch::tensor(f.a, torch::kDouble).unsqueeze(1);
    auto active = torch::tensor(std::vector<double>(sd.begin(), sd.end()), torch::kDouble).gt(0).unsqueeze(1);
    torch::Tensor code;
    for (int it = 0; it < kLloydIters; ++it) {
      code = lv.index({torch::bucketize(rows / A, bd)});
      auto num = (rows * code).sum(1, true), den = (code * code).sum(1, true);
      auto an = num / den;
      auto ok = active.logical_and(den.gt(0)).logical_and(an.gt(0)).logical_and(torch::isfinite(an));
      auto A2 = torch::where(ok, an, A);
      const bool done = ((A2 - A).abs() <= A * 1e-9).all().item<bool>();
      A = A2;
      if (done) break;
    }
    code = lv.index({torch::bucketize(rows / A, bd)});
    f.sse = (rows - code * A).pow(2).sum().item<double>();
    auto Ac = A.squeeze(1).contiguous();
    for (int64_t c = 0; c < C; ++c) f.a[c] = Ac.data_ptr<double>()[c];
    return f;
  }

  pow2::Plan plan(const torch::Tensor& x, int bits) {
    check_bits(bits);
    std::vector<double> sd, mu;
    std_mean(x, &sd, &mu);  // also rejects NaN / inf
    pow2::Plan p;
    p.C = static_cast<int64_t>(sd.size());
    bool zero = false;
    std::vector<double> a(p.C, 1e-7);
    if (x.numel() > 0) {
      torch::NoGradGuard ng;
      // Sampled where the tensor lives, then copied: moving a whole 16 M-element tensor to the host in double
      // made pot:4 take 118 ms on the H200 (bench_gpu), 300x the other schemes. Same elements either way.
      auto xs = x.detach();
      auto rows = axis_ < 0 ? xs.reshape({1, -1}) : xs.movedim(axis_, 0).reshape({p.C, -1});
      // The fit (2 sets x up to kLloydIters passes) runs on at most kFitSamples evenly strided elements per
      // row: a pure function of the tensor (resumable), the full tensor below that size, and bounded cost
      // on very large layers. The output quantizes every element with that scale. (A 4096 cap made LeNet-5
      // pot:3 finetune 1.1 points worse, 89.32 vs 90.95 %: the R / Z choice is noisier on a small sample.)
      const int64_t n = rows.size(1);
      if (n > kFitSamples) rows = rows.slice(1, 0, n, (n + kFitSamples - 1) / kFitSamples);
      rows = rows.to(torch::kCPU, torch::kDouble).contiguous();
      Fit fr = fit(rows, pot_mags(bits, false), pot_lambda(bits, false), sd, mu);
      a = fr.a;
      if (bits >= 2) {
        Fit fz = fit(rows, pot_mags(bits, true), pot_lambda(bits, true), sd, mu);
        if (fz.sse < fr.sse) {
          zero = true;
          a = fz.a;
        }
      }
    }
    for (int64_t c = 0; c < p.C; ++c) p.div.push_back(std::max(static_cast<float>(a[c]), 1e-30f));
    p.scale = p.div;
    p.table = cache_.get(bits * 2 + (zero ? 1 : 0), x,
                         [&] { return pow2::make_table(pow2::signed_levels(pot_mags(bits, zero))); });
    p.format = pow2::Plan::kTable;
    p.lo = p.table.lo;
    p.hi = p.table.hi;
    return p;
  }

  pow2::TableCache cache_;
};

}  // namespace

QuantizerPtr make_pot(const QuantSpec& spec, Role role) { return std::make_shared<PotQuantizer>(spec, role); }

}  // namespace autoqnn::quant
