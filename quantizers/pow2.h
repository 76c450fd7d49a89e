// Shared engine of the power-of-two family (pot.cpp, esb.cpp, apot.cpp, afp.cpp); internal header, not part
// of the public contract.
//
// Every scheme of the family is "normalise, take the nearest level of a fixed table, rescale":
//   t   = (((x - sub_c) / div_c) / alpha)            (each step optional; sub/div per channel or per tensor)
//   xn  = clamp(t, clo, chi)                         (optional: APoT)
//   qn  = nearest level of xn in a sorted table      (or the half-integer grid clamp(floor(xn)) + 0.5)
//   out = qn * scale_c (+ off_c)
// The per-call numbers live in a Plan (host floats, identical for every path). Nearest level: the index is
// the number of decision boundaries < xn (= torch::bucketize(xn, bounds, right=false)); ties go toward 0
// on both signs because boundaries <= 0 are moved one float ulp toward -inf. Never an argmin over levels.
//
// Two element-wise paths compute the same IEEE operations, so they agree bit for bit:
//   * fused CPU kernel (float32, CPU, the quantizer's fused() on): one read of x, one write of out; statistics by a
//     deterministic one-pass reduction; backward by a small autograd node (identity / mask / alpha sum);
//   * composite tensor ops (CUDA, other dtypes, PWL mixing with r > 0), with autograd through ste().
// encode() takes the same path as forward() for the same input, so dequantize() reproduces it exactly.
#pragma once
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "quantizers/quantizer.h"

namespace autoqnn::quant::pow2 {

// ---------------------------------------------------------------- level sets (doubles, sorted ascending)
// ESB split of b bits into 1 sign bit, nl "exponent" bits and lb linear bits for k linear bits:
// nl = min(4, max(1, b - k - 1)), lb = b - nl - 1. Throws std::invalid_argument unless 0 <= k <= b - 2.
void esb_split(int bits, int k, int* nl, int* lb);
// Non-negative ESB magnitudes of the binade set (b, lb), nl = b - lb - 1 in 1..4 (2^(b-1) values, 0
// included): k 2^-lb on [0, 2), then 2^n (1 + j 2^-lb) for n = 1..N, N = 2^nl - 2.
std::vector<double> esb_magnitudes(int bits, int lb);
// alpha / std of the MSE-optimal ESB quantizer of a unit Gaussian (tables in esb.cpp).
//   linear (nl < 2, half-integer levels): esb_linear_alpha(b), b = 1..8.
//   binade set (b, lb): esb_loc_alpha(b, lb), b = 2..8, lb = max(0, b - 5)..b - 2.
// Throw std::out_of_range outside the table.
double esb_linear_alpha(int bits);
double esb_loc_alpha(int bits, int lb);
// E[(X - alpha q(X / alpha))^2] for X ~ N(0, 1) and the symmetric level set {+-m : m in mags} (sorted;
// mags[0] may be 0), by the closed-form Gaussian integral over each decision interval.
double gaussian_mse(const std::vector<double>& mags, double alpha);

// APoT level set L_B normalised so the top level is 1 (B = 1..5; L_1 = {0, 1}), 2^B values.
std::vector<double> apot_levels(int B);

// AFP magnitudes for E exponent and M mantissa bits with e_hi = 0 (2^(E+M) values, 0 included):
// subnormal binade {2^(e_lo+1) k 2^-M : k < 2^M} U {2^e (1 + k 2^-M) : e_lo < e <= 0}, e_lo = 1 - 2^E.
std::vector<double> afp_magnitudes(int E, int M);

// Symmetric signed table {-m..., m...} from magnitudes (0 kept once if present).
std::vector<double> signed_levels(const std::vector<double>& mags);

// "key" / "key=1|true" -> true, "key=0|false" or absent -> false; other values throw std::invalid_argument.
bool parse_bool_param(const QuantSpec& s, const std::string& key);

// ---------------------------------------------------------------- level tables
struct LevelTable {
  // host copies (the fused kernel): levels, boundaries padded with +inf to P - 1 entries (P = 2^ceil(log2 L))
  std::vector<float> lv, pb;
  int P = 1;
  // Magnitude lookup (symmetric or non-negative tables): the index among the n magnitudes is
  // k0 + (mb[k0] < |x|), k0 = lut[bucket], bucket = top 8 mantissa bits + exponent of |x| (at most one
  // boundary per bucket, checked when built). Same result as the binary search; lut empty = not usable.
  enum Kind { kSignedZero, kSignedNoZero, kUnsigned, kOther } kind = kOther;
  std::vector<uint16_t> lut;
  std::vector<float> mb;  // magnitude boundaries, +inf padded (n entries)
  int n_mag = 0;
  int64_t kmin = 0;
  // tensors on the device / dtype of the input (composite path, Encoded::table)
  torch::Tensor levels, bounds;
  double lo = 0, hi = 0;  // min / max level
};
// geometric = true: boundaries at sqrt(l_i l_{i+1}) between same-sign neighbours and 0 between signs (PoT
// rounds in the log domain); otherwise arithmetic midpoints.
LevelTable make_table(const std::vector<double>& levels, bool geometric = false);

// Tables per (key, device, dtype), built once.
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

// ---------------------------------------------------------------- the per-call plan
struct Plan {
  int64_t C = 1;                            // channels (1 per tensor)
  std::vector<float> sub, div;              // optional (empty = skip)
  torch::Tensor alpha;                      // optional learned alpha ([] parameter): t /= alpha
  float alpha_v = 1;                        // its value
  std::vector<float> dfac;                  // with alpha: scale = alpha * dfac (per channel)
  std::vector<float> scale, off;            // scale required (computed from alpha when alpha is set); off optional
  bool clamp = false;                       // xn = clamp(t, clo, chi)
  float clo = 0, chi = 0;
  bool half_grid = false;                   // qn = clamp(floor(xn), glo, ghi) + 0.5, code = floor - glo
  float glo = 0, ghi = 0;
  LevelTable table;                         // when !half_grid
  double lo = 0, hi = 0;                    // level range (PWL_C clip)
  // Optional arithmetic form of the table for the fused kernel (same result as the table lookup):
  //   kFloat: |levels| = a float format with M mantissa bits, smallest normal exponent emin (uniform step
  //           2^(emin-M) below 2^emin, incl. 0), largest level = table.hi; ties toward zero (ESB, AFP);
  //   kPow2:  |levels| = 2^e, e = 0..table.hi's exponent, log-domain rounding at float(sqrt2) 2^e (PoT).
  enum Format { kTable, kFloat, kPow2 } format = kTable;
  int fmt_m = 0, fmt_emin = 0;
  bool check_input = false;                 // no statistic reads x: check it for NaN/inf explicitly
};

// Base of the family. Whether the fused kernel runs is the quantizer's own fused() option (Quantizer).
class Pow2Quantizer : public Quantizer {
 public:
  using Quantizer::Quantizer;

 protected:
  // Detached per-channel ([C]) or per-tensor ([1]) statistics as doubles; NaN/inf -> std::domain_error.
  // std is unbiased (n - 1) when n > 1, 0 for one element. Empty tensor: zeros.
  void std_mean(const torch::Tensor& x, std::vector<double>* sd, std::vector<double>* mean) const;
  std::vector<double> absmax(const torch::Tensor& x) const;
  int64_t channels(const torch::Tensor& x) const { return axis_ < 0 ? 1 : num_channels(x.sizes()); }
  // [] (per tensor) or [C] float32 on like's device.
  torch::Tensor param(const std::vector<float>& v, const torch::Tensor& like) const;
  // Fills plan.scale from alpha * dfac when the plan has an alpha.
  void resolve_scale(Plan& p) const;

  // Fake quantisation with the backward rule (see the header comment).
  torch::Tensor fake_quant(const torch::Tensor& x, const Plan& p);
  // Encoded of x under p (codes by the same path as fake_quant), code_bits bits.
  Encoded encode_plan(const torch::Tensor& x, const Plan& p, int code_bits);
  std::string prefix() const { return "quantizer '" + spec_.to_string() + "': "; }

 private:
  bool use_fused(const torch::Tensor& x) const;
  torch::Tensor composite_t(const torch::Tensor& x, const Plan& p) const;   // t (and clamp) with autograd
  torch::Tensor composite_qn(const torch::Tensor& xn, const Plan& p, torch::Tensor* codes) const;
};

}  // namespace autoqnn::quant::pow2
