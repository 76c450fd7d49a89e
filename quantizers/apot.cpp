// APoT: additive powers of two (Li, Dong, Wang; ICLR 2020) with a learned clip alpha.
// Level sets L_B (top level 1) are unions of sums over base sets that each include 0 (see apot_levels).
//   weights, b bits:     wn = (W - mean) / std (detached statistics; per tensor or per channel),
//                        x = clamp(wn / alpha, -1, 1), q = nearest level of +-L_{b-1} (2^b - 1 values),
//                        out = std * (alpha * STE(x -> q)) + mean  -- back in W's units, so the scheme is a
//                        drop-in like every other one (mixtures, post-training use). With :normalized the
//                        output stays alpha * q in the normalised domain, exactly as the paper's code
//                        (which relies on a following BatchNorm).
//   activations, b bits: x = clamp(a / alpha, 0, 1), q = nearest level of L_b (unsigned), out = alpha * q.
// alpha is a registered parameter (init 3 for weights, 8 for activations; alpha= overrides).
// d out / d alpha = sign(x) where |a / alpha| > 1 and q - x inside (times std for weights unless
// :normalized); d out / d W = 1 inside the clip range, 0 outside (the clamp).
#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "quantizers/pow2.h"

namespace autoqnn::quant {
namespace pow2 {

std::vector<double> apot_levels(int B) {
  if (B == 1) return {0.0, 1.0};
  auto p = [](int e) { return std::ldexp(1.0, -e); };
  std::vector<double> a{0}, b{0}, c{0};
  switch (B) {
    case 2: a = {0, p(1), p(2), p(3)}; break;
    case 3: a = {0, p(1), p(2), p(4)}; b = {0, p(3)}; break;
    case 4: a = {0, p(1), p(3), p(5)}; b = {0, p(2), p(4), p(6)}; break;
    case 5: a = {0, p(1), p(3), p(6)}; b = {0, p(2), p(4), p(7)}; c = {0, p(5)}; break;
    default: throw std::out_of_range("apot_levels: B=" + std::to_string(B) + " (valid: 1..5)");
  }
  std::set<double> s;
  for (double x : a)
    for (double y : b)
      for (double z : c) s.insert(x + y + z);  // sums of powers of two >= 2^-7: exact in double
  const double top = *s.rbegin();
  std::vector<double> out;
  for (double v : s) out.push_back(v / top);
  return out;
}

}  // namespace pow2

namespace {
bool apot_normalized(const QuantSpec& spec) { return pow2::parse_bool_param(spec, "normalized"); }
double apot_alpha(const QuantSpec& spec, Role role) {
  return spec.get_double("alpha", role == Role::Weight ? 3.0 : 8.0);
}
}  // namespace

void validate_apot(const QuantSpec& spec, Role role) {
  const std::string prefix = "quantizer '" + spec.to_string() + "': ";
  const bool normalized = apot_normalized(spec);
  if (role == Role::Activation && common_options(spec).axis >= 0)
    throw std::invalid_argument(prefix + "apot activations have one learned alpha; per_channel is for weights");
  if (role == Role::Activation && normalized)
    throw std::invalid_argument(prefix + "'normalized' applies to apot weights only");
  const double a0 = apot_alpha(spec, role);
  if (!(a0 > 0) || !std::isfinite(a0)) throw std::invalid_argument(prefix + "alpha must be > 0");
}

// b-bit codes + the level table; weights: + std and mean per channel (the normalisation; one alpha with
// :normalized), activations: + alpha.
StorageCost storage_apot(const QuantSpec& spec, at::IntArrayRef shape, Role role) {
  const int64_t L = int64_t(1) << spec.bits;
  if (role != Role::Weight) return storage_of(spec, shape, 0, L + 1);
  const int64_t C = channels_along(common_options(spec).axis, shape, spec);
  return storage_of(spec, shape, 0, (L - 1) + (apot_normalized(spec) ? 1 : 2 * C));
}

namespace {

class ApotQuantizer final : public pow2::Pow2Quantizer {
 public:
  ApotQuantizer(QuantSpec spec, Role role)
      : Pow2Quantizer(std::move(spec), role), normalized_(apot_normalized(spec_)) {
    alpha_ = register_parameter("alpha", torch::full({}, apot_alpha(spec_, role_), torch::kFloat32));
  }

  torch::Tensor quantize(const torch::Tensor& x, int bits) override { return fake_quant(x, plan(x, bits)); }
  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    return encode_plan(x, plan(x, bits()), bits());
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_apot(spec_, shape, role_); }

  // Sets alpha to the value minimising the quantization MSE of x (normalised for weights) over 128 values
  // in (0, 2 max] (the sparse top of L_B often fits best above the data); at most 2^15 elements are used
  // (strided subsample); successive calls average their optima.
  void calibrate(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    if (x.numel() == 0) return;
    torch::Tensor v = x.detach().to(torch::kFloat32);
    if (role_ == Role::Weight) {
      std::vector<double> sd, mu;
      std_mean(x, &sd, &mu);
      std::vector<float> s, m;
      for (size_t c = 0; c < sd.size(); ++c) {
        s.push_back(static_cast<float>(sd[c] > 0 ? sd[c] : 1.0));
        m.push_back(static_cast<float>(mu[c]));
      }
      v = (v - bcast(param(m, v), v)) / bcast(param(s, v), v);
    } else {
      check_finite(v.sum(), "sum(x)");
    }
    v = v.flatten();
    const int64_t n = v.numel(), cap = 1 << 15;
    if (n > cap) v = v.slice(0, 0, n, (n + cap - 1) / cap);
    v = v.to(torch::kCPU).contiguous();
    const float* pv = v.data_ptr<float>();
    const int64_t m = v.numel();
    double hi = 0;
    for (int64_t i = 0; i < m; ++i) hi = std::max<double>(hi, role_ == Role::Weight ? std::fabs(pv[i]) : pv[i]);
    if (!(hi > 0)) return;
    auto t = pow2::make_table(table_levels(bits()));
    const float clo = role_ == Role::Weight ? -1.f : 0.f;
    const int K = 128;
    double best = 0, best_err = std::numeric_limits<double>::infinity();
    for (int i = 1; i <= K; ++i) {
      const float a = static_cast<float>(2 * hi * i / K);
      double err = 0;
      for (int64_t j = 0; j < m; ++j) {
        const float xn = std::min(std::max(pv[j] / a, clo), 1.f);
        int k = 0;
        for (int step = t.P >> 1; step > 0; step >>= 1) k += (t.pb[k + step - 1] < xn) ? step : 0;
        const double d = double(t.lv[k]) * a - pv[j];
        err += d * d;
      }
      if (err < best_err) best_err = err, best = a;
    }
    ++calib_count_;
    const double cur = alpha_.item<double>();
    alpha_.fill_(calib_count_ == 1 ? best : cur + (best - cur) / calib_count_);
  }

 private:
  void check_bits(int bits) const {
    if (bits < 2 || bits > 5)
      throw std::invalid_argument(prefix() + "apot supports 2..5 bits, got " + std::to_string(bits));
  }

  std::vector<double> table_levels(int bits) const {
    if (role_ == Role::Weight) return pow2::signed_levels(pow2::apot_levels(bits - 1));
    return pow2::apot_levels(bits);
  }

  pow2::Plan plan(const torch::Tensor& x, int bits) {
    check_bits(bits);
    pow2::Plan p;
    p.alpha = alpha_.clamp_min(1e-6);
    p.alpha_v = p.alpha.item<float>();
    p.clamp = true;
    p.chi = 1.f;
    if (role_ == Role::Weight) {
      std::vector<double> sd, mu;
      std_mean(x, &sd, &mu);
      p.C = static_cast<int64_t>(sd.size());
      for (int64_t c = 0; c < p.C; ++c) {
        p.sub.push_back(static_cast<float>(mu[c]));
        p.div.push_back(static_cast<float>(sd[c] > 0 ? sd[c] : 1.0));  // constant: wn = 0 -> out = mean
      }
      p.clo = -1.f;
      if (!normalized_) {
        p.dfac = p.div;  // scale = alpha * std
        p.off = p.sub;
      }
    } else {
      p.clo = 0.f;
      p.check_input = true;
    }
    resolve_scale(p);
    p.table = cache_.get(bits, x, [&] { return pow2::make_table(table_levels(bits)); });
    p.lo = p.table.lo;
    p.hi = p.table.hi;
    return p;
  }

  bool normalized_ = false;
  torch::Tensor alpha_;
  int calib_count_ = 0;
  pow2::TableCache cache_;
};

}  // namespace

QuantizerPtr make_apot(const QuantSpec& spec, Role role) { return std::make_shared<ApotQuantizer>(spec, role); }

}  // namespace autoqnn::quant
