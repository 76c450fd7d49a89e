// Shared pieces of the power-of-two family (pot.cpp, esb.cpp, apot.cpp, afp.cpp): the level sets as plain
// numbers (so tests can check them) and a small "nearest level of a sorted table" helper.
//
// Nearest level: codes = bucketize(xn, boundaries), qn = table[codes]. One binary search per element over
// at most 255 boundaries -- never an argmin over all levels. Ties (xn exactly on a boundary) go toward
// zero on both signs: boundaries <= 0 are moved one float32 ulp toward -inf so that the comparison
// `xn <= boundary` (bucketize, right = false) sends a negative tie up and a positive tie down.
#pragma once
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "quantizers/quantizer.h"

namespace autoqnn::quant::pow2 {

// ---------------------------------------------------------------- level sets (doubles, sorted ascending)
// ESB split of b bits into 1 sign bit, nl "exponent" bits and lb linear bits for k linear bits:
// nl = min(4, max(1, b - k - 1)), lb = b - nl - 1. Throws std::invalid_argument unless 0 <= k <= b - 2.
void esb_split(int bits, int k, int* nl, int* lb);
// Non-negative ESB magnitudes of the binade set (b, lb) with nl = b - lb - 1 >= 1 (2^(b-1) values,
// 0 included): k 2^-lb on [0, 2), then 2^n (1 + j 2^-lb) for n = 1..N, N = 2^nl - 2.
std::vector<double> esb_magnitudes(int bits, int lb);
// Scale factor alpha / std of the MSE-optimal ESB quantizer of a unit Gaussian.
//   linear (nl < 2, half-integer levels): esb_linear_alpha(b), b = 1..8.
//   binade set (b, lb): esb_loc_alpha(b, lb), b = 2..8, lb = max(0, b - 5)..b - 2 (nl = b - lb - 1 in 1..4).
// Throw std::out_of_range outside the table.
double esb_linear_alpha(int bits);
double esb_loc_alpha(int bits, int lb);
// Expected squared error E[(X - alpha q(X / alpha))^2] of X ~ N(0, 1) for the symmetric level set
// {+-m : m in mags} (mags sorted ascending; mags[0] may be 0), by the closed-form Gaussian integrals of
// each decision interval (exact up to erf rounding).
double gaussian_mse(const std::vector<double>& mags, double alpha);

// APoT level set L_B normalised so the top level is 1 (B = 1..5; L_1 = {0, 1}), 2^B values.
std::vector<double> apot_levels(int B);

// AFP magnitudes for E exponent and M mantissa bits with e_hi = 0 (2^(E+M) values, 0 included):
// subnormal binade {2^(e_lo+1) k 2^-M : k < 2^M} U {2^e (1 + k 2^-M) : e_lo < e <= 0}, e_lo = 1 - 2^E.
std::vector<double> afp_magnitudes(int E, int M);

// ---------------------------------------------------------------- table helper
struct LevelTable {
  torch::Tensor levels;  // [L] sorted ascending
  torch::Tensor bounds;  // [L-1] decision boundaries (see the header comment for ties)
  double lo = 0, hi = 0; // min / max level (PWL_C clip range)
  int64_t size() const { return levels.numel(); }
};

// Symmetric signed table {-m..., m...} from magnitudes (0 kept once if present).
inline std::vector<double> signed_levels(const std::vector<double>& mags) {
  std::vector<double> out;
  for (auto it = mags.rbegin(); it != mags.rend(); ++it)
    if (*it != 0) out.push_back(-*it);
  for (double m : mags) out.push_back(m);
  return out;
}

// geometric = true: boundaries at sqrt(l_i l_{i+1}) between same-sign neighbours, 0 between signs
// (PoT rounds in the log domain); otherwise arithmetic midpoints.
inline LevelTable make_table(const std::vector<double>& lv, bool geometric = false) {
  TORCH_CHECK(!lv.empty(), "empty level table");
  std::vector<float> l(lv.begin(), lv.end()), b;
  for (size_t i = 0; i + 1 < lv.size(); ++i) {
    double m;
    if (geometric && lv[i] > 0 && lv[i + 1] > 0) m = std::sqrt(lv[i] * lv[i + 1]);
    else if (geometric && lv[i] < 0 && lv[i + 1] < 0) m = -std::sqrt(lv[i] * lv[i + 1]);
    else if (geometric) m = 0;
    else m = 0.5 * (lv[i] + lv[i + 1]);
    float f = static_cast<float>(m);
    if (f <= 0) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    b.push_back(f);
  }
  LevelTable t;
  t.levels = torch::tensor(l, torch::kFloat32);
  t.bounds = b.empty() ? torch::zeros({0}, torch::kFloat32) : torch::tensor(b, torch::kFloat32);
  t.lo = lv.front();
  t.hi = lv.back();
  return t;
}

// Per (key, device, dtype) copies of CPU-built tables, so a forward does no host->device copy.
class TableCache {
 public:
  template <class Build>
  LevelTable get(int key, const torch::Tensor& like, Build build) {
    std::lock_guard<std::mutex> g(mu_);
    auto k = std::make_pair(key, like.device().str() + "/" + std::string(c10::toString(like.scalar_type())));
    auto it = cache_.find(k);
    if (it != cache_.end()) return it->second;
    LevelTable t = build();
    auto opt = torch::TensorOptions().device(like.device()).dtype(like.scalar_type());
    t.levels = t.levels.to(opt);
    t.bounds = t.bounds.to(opt);
    return cache_.emplace(k, t).first->second;
  }

 private:
  std::mutex mu_;
  std::map<std::pair<int, std::string>, LevelTable> cache_;
};

// Index of the nearest level of xn (detached) in t; int64, same shape as xn.
inline torch::Tensor nearest_codes(const torch::Tensor& xn, const LevelTable& t) {
  if (t.bounds.numel() == 0) return torch::zeros(xn.sizes(), xn.options().dtype(torch::kLong));
  return torch::bucketize(xn.detach(), t.bounds, /*out_int32=*/false, /*right=*/false);
}
inline torch::Tensor gather_levels(const LevelTable& t, const torch::Tensor& codes) {
  return torch::take(t.levels, codes);
}

// Std and mean of x per channel (rows of `rows` [C, n]) as [C], or per tensor as [].
// Unbiased (n - 1) when n > 1, so a single element gives std 0, not NaN.
inline std::pair<torch::Tensor, torch::Tensor> std_mean_rows(const torch::Tensor& rows, bool per_tensor) {
  const bool unbiased = rows.size(1) > 1;
  auto sm = torch::std_mean(rows, at::IntArrayRef{1}, unbiased, /*keepdim=*/false);
  auto sd = std::get<0>(sm), mu = std::get<1>(sm);
  if (per_tensor) {
    sd = sd.reshape({});
    mu = mu.reshape({});
  }
  return {sd, mu};
}

// Base of the family: detached data statistics per tensor / per channel and the shared output step.
class Pow2Quantizer : public Quantizer {
 public:
  using Quantizer::Quantizer;

 protected:
  std::vector<int64_t> stat_dims(const torch::Tensor& x) const {
    return axis_ < 0 ? std::vector<int64_t>{} : std::vector<int64_t>{num_channels(x.sizes())};
  }
  // (std, mean) of x.detach(); zeros for an empty tensor.
  std::pair<torch::Tensor, torch::Tensor> data_std_mean(const torch::Tensor& x) const {
    torch::NoGradGuard ng;
    if (x.numel() == 0) {
      auto z = torch::zeros(stat_dims(x), x.options());
      return {z, z.clone()};
    }
    return std_mean_rows(channel_rows(x.detach()), axis_ < 0);
  }
  // max |x| (detached); 0 for an empty tensor. One pass (aminmax), no |x| temporary.
  torch::Tensor data_absmax(const torch::Tensor& x) const {
    torch::NoGradGuard ng;
    if (x.numel() == 0) return torch::zeros(stat_dims(x), x.options());
    auto rows = channel_rows(x.detach());
    auto mm = torch::aminmax(rows, /*dim=*/1, /*keepdim=*/false);
    auto a = torch::max(std::get<0>(mm).neg(), std::get<1>(mm));
    return axis_ < 0 ? a.reshape({}) : a;
  }
  // Whether the straight-through combine is needed (gradient wanted, or PWL's forward term while training).
  bool need_ste(const torch::Tensor& xn) const {
    return xn.requires_grad() || (is_training() && backward_ != Backward::STE && grad_ratio_ > 0);
  }
  // out = STE(xn -> qn) * scale (+ offset): the exact op order Encoded::dequantize() uses.
  torch::Tensor finish(const torch::Tensor& x, const torch::Tensor& xn, const torch::Tensor& qn,
                       const torch::Tensor& scale, const torch::Tensor& offset, double lo, double hi) const {
    auto y = need_ste(xn) ? ste(xn, qn, lo, hi) : qn;
    auto out = y * bcast(scale, x);
    if (offset.defined()) out = out + bcast(offset, x);
    return out;
  }
  std::string prefix() const { return "quantizer '" + spec_.to_string() + "': "; }
};

bool parse_bool_param(const QuantSpec& s, const std::string& key);


}  // namespace autoqnn::quant::pow2
