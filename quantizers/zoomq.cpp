// ZoomQ (asymmetric min-max, as in the reference):
//   a = (max - min) / (2^b - 1e-4) + 1e-7,  levels min + a/2 + k a, k = 0 .. 2^b - 1 (all inside [min, max]).
//   qn = clip(round((x - min) / a - 0.5), 0, 2^b - 1) + 0.5,  out = qn * a + min.
// Affine half-integer grid (grid_base 0.5), scale a and offset min per tensor or per channel.
// Constant input (max == min): offset min - a/2 so the single used level is min (all-zero -> exactly 0).
// PWL_C clips the gradient to the input range [min, max]. Activations: EMA of min and max.
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// b-bit codes + step and minimum per channel.
StorageCost storage_zoomq(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 2); }

namespace {

class ZoomQuantizer final : public SchemeQuantizer {
 public:
  ZoomQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {
    add_activation_running({"min", "max"});
  }

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    Plan p = plan(x, bits);
    return run(p, bits, [&](auto qf, auto qc) { return fake_quant(x, p, qf, qc); });
  }

  Encoded encode(const torch::Tensor& x) override {
    EvalScope ev(*this);
    torch::NoGradGuard ng;
    if (x.numel() == 0) return encode_empty(x, bits(), 0.5, true);
    Plan p = plan(x, bits());
    auto qn = run(p, bits(), [&](auto qf, auto qc) { return qn_of(x, qf, qc); });
    return encode_grid(qn, p, bits(), 0.5);
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_zoomq(spec_, shape, role_); }

 private:
  Plan plan(const torch::Tensor& x, int bits) {
    Plan p;
    p.C = channels_of(x);
    auto mm = stat_min_max(x);
    auto mn = fq::to_host(track("min", mm.first));
    auto mx = fq::to_host(track("max", mm.second));
    const double levels = std::ldexp(1.0, bits);
    p.s.resize(p.C);
    p.off.resize(p.C);
    p.xlo.resize(p.C);
    p.xhi.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) {
      const float lo = std::min(mn[c], mx[c]), hi = std::max(mn[c], mx[c]);
      const float a = static_cast<float>(static_cast<double>(hi - lo) / (levels - 1e-4) + 1e-7);
      p.s[c] = a;
      p.off[c] = hi > lo ? lo : lo - 0.5f * a;
      p.xlo[c] = lo;
      p.xhi[c] = hi;
    }
    finish_plan(p, x);
    return p;
  }

  template <class F>
  torch::Tensor run(const Plan& p, int bits, F&& f) {
    const float top = std::ldexp(1.f, bits) - 1;
    const float* s = p.s.data();
    const float* o = p.off.data();
    auto qf = [s, o, top](int64_t c) {
      const float sc = s[c], oc = o[c];
      return [sc, oc, top](float v) { return fq::rne(fq::clampf((v - oc) / sc - 0.5f, 0.f, top)) + 0.5f; };
    };
    auto qc = [&](const torch::Tensor& xd) {
      return torch::round((xd - bcast(p.off_t, xd)) / bcast(p.s_t, xd) - 0.5).clamp(0, top) + 0.5;
    };
    return f(qf, qc);
  }
};

}  // namespace

QuantizerPtr make_zoomq(const QuantSpec& spec, Role role) { return std::make_shared<ZoomQuantizer>(spec, role); }

}  // namespace autoqnn::quant
