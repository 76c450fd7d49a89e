// Uniform min-max quantization.
//   symmetric (default): N = 2^(b-1) - 1, s = max|x| / N, qn = clip(round(x / s), -N, N), out = qn * s.
//   asymmetric (asym):   range [lo, hi] = [min(min x, 0), max(max x, 0)], s = (hi - lo) / (2^b - 1),
//                        z = clip(round(-lo / s), 0, 2^b - 1), off = -(z * s),
//                        qn = clip(round((x - off) / s), 0, 2^b - 1), out = qn * s + off (0 is exact).
// Activations use an EMA of max|x| (of min / max with asym).
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

void validate_uniform(const QuantSpec& spec, Role) {
  if (spec.has("asym") && !spec.get("asym", "").empty())
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': asym is a flag (no value)");
}

// b-bit codes + scale (and offset with asym) per channel.
StorageCost storage_uniform(const QuantSpec& spec, at::IntArrayRef shape, Role) {
  return storage_of(spec, shape, spec.flag("asym") ? 2 : 1);
}

namespace {

class UniformQuantizer final : public SchemeQuantizer {
 public:
  UniformQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role), asym_(spec.flag("asym")) {
    if (asym_) add_activation_running({"min", "max"});
    else add_activation_running({"max_abs"});
  }

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    Plan p = plan(x, bits);
    return run(x, p, bits, [&](const Plan& pp, auto qf, auto qc) { return fake_quant(x, pp, qf, qc); });
  }

  Encoded encode(const torch::Tensor& x) override {
    EvalScope ev(*this);
    torch::NoGradGuard ng;
    const int b = bits();
    if (x.numel() == 0) return encode_empty(x, b, asym_ ? 0.0 : -double((1 << (b - 1)) - 1), asym_);
    Plan p = plan(x, b);
    auto qn = run(x, p, b, [&](const Plan&, auto qf, auto qc) { return qn_of(x, qf, qc); });
    return encode_grid(qn, p, b, asym_ ? 0.0 : -double((1 << (b - 1)) - 1));
  }

  torch::Tensor levels(const torch::Tensor& x, int64_t channel = 0) override {
    if (asym_) return Quantizer::levels(x, channel);
    const double N = (1 << (bits() - 1)) - 1;
    return grid_levels(x, channel, -N, N);
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_uniform(spec_, shape, role_); }

 private:
  Plan plan(const torch::Tensor& x, int bits) {
    Plan p;
    p.C = channels_of(x);
    if (!asym_) {
      const float N = static_cast<float>((1 << (bits - 1)) - 1);
      auto m = fq::to_host(track("max_abs", stat_max_abs(x)));
      p.s.resize(p.C);
      for (int64_t c = 0; c < p.C; ++c) p.s[c] = m[c] > 0 ? m[c] / N : 1.f;
      set_range(p, -N, N);
      p.grid.lo = -N;
      p.grid.hi = N;
    } else {
      const float L = static_cast<float>((1 << bits) - 1);
      auto mm = stat_min_max(x);
      auto mn = fq::to_host(track("min", mm.first));
      auto mx = fq::to_host(track("max", mm.second));
      p.s.resize(p.C);
      p.off.resize(p.C);
      for (int64_t c = 0; c < p.C; ++c) {
        const float lo = std::min(mn[c], 0.f), hi = std::max(mx[c], 0.f);
        float s = (hi - lo) / L;
        if (!(s > 0) || !std::isfinite(s)) s = 1.f;
        const float z = std::min(std::max(std::nearbyint(-lo / s), 0.f), L);
        p.s[c] = s;
        p.off[c] = -(z * s);
      }
      set_range(p, 0, L);
      p.grid.lo = 0;
      p.grid.hi = L;
    }
    finish_plan(p, x);
    p.grid.mode = 0;  // qn = rne(clamp((x - off) / s, lo, hi))
    p.grid.a = p.s_t;
    if (asym_) p.grid.o = p.off_t;
    return p;
  }

  template <class F>
  torch::Tensor run(const torch::Tensor& x, const Plan& p, int bits, F&& f) {
    const float* s = p.s.data();
    if (!asym_) {
      const float N = static_cast<float>((1 << (bits - 1)) - 1);
      auto qf = [s, N](int64_t c) {
        const float sc = s[c];
        return [sc, N](float v) { return fq::rne(fq::clampf(v / sc, -N, N)); };
      };
      auto qc = [&](const torch::Tensor& xd) { return torch::round(xd / bcast(p.s_t, xd)).clamp(-N, N); };
      return f(p, qf, qc);
    }
    const float L = static_cast<float>((1 << bits) - 1);
    const float* o = p.off.data();
    auto qf = [s, o, L](int64_t c) {
      const float sc = s[c], oc = o[c];
      return [sc, oc, L](float v) { return fq::rne(fq::clampf((v - oc) / sc, 0.f, L)); };
    };
    auto qc = [&](const torch::Tensor& xd) {
      return torch::round((xd - bcast(p.off_t, xd)) / bcast(p.s_t, xd)).clamp(0, L);
    };
    return f(p, qf, qc);
  }

  bool asym_;
};

}  // namespace

QuantizerPtr make_uniform(const QuantSpec& spec, Role role) { return std::make_shared<UniformQuantizer>(spec, role); }

}  // namespace autoqnn::quant
