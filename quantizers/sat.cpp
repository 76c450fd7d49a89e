// SAT weights (scale-adjusted training, Jin, Yang, Liao; the weight quantizer of AdaBits):
//   t = tanh(x) / max|tanh(x)|,  u = (t + 1) / 2 in [0, 1],
//   code = min(floor(2^b u), 2^b - 1)                       (nested: the b'-bit code is code >> (b - b'))
//   Q = (2 code + 1) / 2^b - 1 = qn * 2^(1-b),  qn = code - 2^(b-1) + 0.5   (half-integer grid, symmetric)
//   rescale (spec flag, for layers without a following BatchNorm):  Q* = Q / sqrt(n_out Var[Q])
//     n_out = shape[0] * prod(shape[2:]) (out_features, or out_ch * kh * kw), Var population, detached,
//     so Var[Q*] = 1 / n_out.
//   out = qn * scale,  scale = 2^(1-b) * k   (k = 1, or the rescale factor)
// Gradient: straight-through the rounding, through tanh (the max and the variance are detached statistics).
// Per tensor only, weights only (activations use pact = CG-PACT). No learned parameters.
#include <cmath>

#include "quantizers/quantizer.h"

namespace autoqnn::quant {
namespace {
// The rescale flag: absent or 0 -> off, bare or 1 -> on; another value throws.
bool sat_rescale(const QuantSpec& spec) {
  if (!spec.has("rescale")) return false;
  const std::string v = spec.get("rescale", "");
  if (v != "" && v != "1" && v != "0")
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': rescale takes no value, or 0|1");
  return v != "0";
}
}  // namespace

void validate_sat(const QuantSpec& spec, Role) {
  if (common_options(spec).axis >= 0)
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': sat normalises by the tensor's max "
                                "(no per_channel)");
  sat_rescale(spec);
}

// b-bit codes + one scale (per tensor).
StorageCost storage_sat(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 0, 1); }

namespace {

class SatQuantizer final : public Quantizer {
 public:
  SatQuantizer(const QuantSpec& spec, Role role) : Quantizer(spec, role), rescale_(sat_rescale(spec)) {}

  bool rescale() const { return rescale_; }

  torch::Tensor quantize(const torch::Tensor& x, int bits) override {
    check_bits(bits);
    if (x.numel() == 0) return x.clone();
    auto st = stats(x, bits);
    auto lv = std::ldexp(1.0, bits);  // 2^b
    auto u = (torch::tanh(x) * st.inv_max + 1.0) * 0.5;
    auto xn = u * lv - lv / 2;  // level units: qn = floor-based rounding of xn, +0.5
    const double lo = -lv / 2 + 0.5, hi = lv / 2 - 0.5;
    return ste(xn, st.qn, lo, hi) * st.scale;
  }

  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    const int b = bits();
    Encoded e;
    e.code_bits = b;
    e.grid_base = -std::ldexp(1.0, b - 1) + 0.5;
    if (x.numel() == 0) {
      e.codes = torch::zeros(x.sizes(), x.options().dtype(torch::kInt64));
      e.scale = torch::full({}, static_cast<float>(std::ldexp(1.0, 1 - b)), x.options().dtype(torch::kFloat32));
      return e;
    }
    auto st = stats(x, b);
    e.codes = st.codes;
    e.scale = st.scale;
    return e;
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_sat(spec_, shape, role_); }

 private:
  struct Stats {
    torch::Tensor inv_max;  // [] 1 / max|tanh x| (0 when all zero)
    torch::Tensor codes;    // int64
    torch::Tensor qn;       // float32 half-integer level
    torch::Tensor scale;    // float32 []
  };

  // n_out of a weight: shape[0] * prod(shape[2:]) (1-D: its length).
  static double fan_out(at::IntArrayRef s) {
    double n = s.empty() ? 1.0 : static_cast<double>(s[0]);
    for (size_t i = 2; i < s.size(); ++i) n *= static_cast<double>(s[i]);
    return n;
  }

  Stats stats(const torch::Tensor& x, int bits) const {
    torch::NoGradGuard ng;
    Stats st;
    auto xf = x.detach().to(torch::kFloat32);
    auto th = torch::tanh(xf);
    auto m = th.abs().amax();
    check_finite(xf.abs().amax(), "max|x|");
    const double mv = m.item<double>();
    const bool zero = !(mv > 0);
    st.inv_max = torch::full({}, zero ? 0.0 : 1.0 / mv, xf.options());
    const double lv = std::ldexp(1.0, bits);
    // The same float32 operations as quantize() computes u with, so codes agree with the forward.
    auto u = (th * st.inv_max + 1.0) * 0.5;
    st.codes = torch::floor(u * lv).clamp(0, lv - 1).to(torch::kInt64);
    st.qn = st.codes.to(torch::kFloat32) + static_cast<float>(-lv / 2 + 0.5);
    double k = zero ? 0.0 : 1.0;
    if (rescale_ && !zero) {
      auto q = st.qn.to(torch::kFloat64) * std::ldexp(1.0, 1 - bits);
      double var = q.var(/*unbiased=*/false).item<double>();
      if (!(var > 0)) var = q.pow(2).mean().item<double>();  // constant tensor: second moment
      k = var > 0 ? 1.0 / std::sqrt(fan_out(x.sizes()) * var) : 0.0;
    }
    st.scale = torch::full({}, static_cast<float>(std::ldexp(k, 1 - bits)), xf.options());
    return st;
  }

  bool rescale_ = false;
};

}  // namespace

QuantizerPtr make_sat(const QuantSpec& spec, Role role) { return std::make_shared<SatQuantizer>(spec, role); }

}  // namespace autoqnn::quant
