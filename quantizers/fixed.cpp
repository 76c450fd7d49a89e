// Power-of-two fixed point.
//   e = floor(log2(max|x|)) - (b - 2),  s = 2^e,  qn = clip(round(x / s), -2^(b-1), 2^(b-1) - 1),  out = qn * s.
// Fixes of the reference: the codes are clipped (the reference lets +max|x| reach code +2^(b-1)); max|x| = 0
// gives s = 1 (all-zero output) instead of log(0); e >= -126 keeps s a normal float.
// Activations: EMA of max|x|, e derived from the running value.
#include <cmath>

#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// b-bit codes + the power-of-two step per channel.
StorageCost storage_fixed(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 1); }

namespace {

class FixedQuantizer final : public SchemeQuantizer {
 public:
  FixedQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {
    add_activation_running({"max_abs"});
  }

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    Plan p = plan(x, bits);
    return run(x, p, bits, [&](auto qf, auto qc) { return fake_quant(x, p, qf, qc); });
  }

  Encoded encode(const torch::Tensor& x) override {
    EvalScope ev(*this);
    torch::NoGradGuard ng;
    const int b = bits();
    const double base = -std::ldexp(1.0, b - 1);
    if (x.numel() == 0) return encode_empty(x, b, base, false);
    Plan p = plan(x, b);
    auto qn = run(x, p, b, [&](auto qf, auto qc) { return qn_of(x, qf, qc); });
    return encode_grid(qn, p, b, base);
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_fixed(spec_, shape, role_); }

  // Power-of-two step for a given max|x| (exposed for tests through the formula in docs/quantizers.md).
  static float step_for(float m, int bits) {
    if (!(m > 0)) return 1.f;
    int E = 0;
    std::frexp(m, &E);  // m = f * 2^E, f in [0.5, 1): floor(log2 m) = E - 1
    int e = (E - 1) - (bits - 2);
    e = std::max(e, -126);
    return std::ldexp(1.f, e);
  }

 private:
  Plan plan(const torch::Tensor& x, int bits) {
    Plan p;
    p.C = channels_of(x);
    auto m = fq::to_host(track("max_abs", stat_max_abs(x)));
    p.s.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) p.s[c] = step_for(m[c], bits);
    const double lo = -std::ldexp(1.0, bits - 1), hi = std::ldexp(1.0, bits - 1) - 1;
    set_range(p, lo, hi);
    finish_plan(p, x);
    p.grid.mode = 0;  // qn = rne(clamp(x / s, lo, hi))
    p.grid.a = p.s_t;
    p.grid.lo = static_cast<float>(lo);
    p.grid.hi = static_cast<float>(hi);
    return p;
  }

  template <class F>
  torch::Tensor run(const torch::Tensor& x, const Plan& p, int bits, F&& f) {
    const float lo = -std::ldexp(1.f, bits - 1), hi = std::ldexp(1.f, bits - 1) - 1;
    const float* s = p.s.data();
    auto qf = [s, lo, hi](int64_t c) {
      const float sc = s[c];
      return [sc, lo, hi](float v) { return fq::rne(fq::clampf(v / sc, lo, hi)); };
    };
    auto qc = [&](const torch::Tensor& xd) { return torch::round(xd / bcast(p.s_t, xd)).clamp(lo, hi); };
    return f(qf, qc);
  }
};

}  // namespace

QuantizerPtr make_fixed(const QuantSpec& spec, Role role) { return std::make_shared<FixedQuantizer>(spec, role); }

}  // namespace autoqnn::quant
