// PACT with the calibrated gradient of CG-PACT (unsigned activations, learned clip alpha):
//   L = 2^b - 1, s = alpha / L, qn = clip(round(x / s), 0, L), out = qn * s
//   (= alpha * q(min(relu(x), alpha) / alpha), q(u) = round(L u) / L).
//   d out / d x     = 1 for 0 <= x < alpha, else 0;
//   d out / d alpha = 1 for x >= alpha,  q(x / alpha) - x / alpha = (qn - x / s) / L for 0 <= x < alpha, 0 below 0.
// alpha is a registered parameter ("alpha", spec alpha=6 by default), used as max(alpha, 1e-6); calibrate() sets it
// to the 99.9th percentile of the data (the running mean over calibration batches). Per tensor only.
#include <atomic>
#include <cmath>

#include "quantizers/fq_common.h"

namespace autoqnn::quant {

void validate_pact(const QuantSpec& spec, Role) {
  if (common_options(spec).axis >= 0)
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': pact has one learned clip (no per_channel)");
  const double a = spec.get_double("alpha", 6.0);
  if (!(a > 0) || !std::isfinite(a))
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': alpha must be > 0");
}

// b-bit codes + the clip (per tensor).
StorageCost storage_pact(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 0, 1); }

namespace {

constexpr double kMinAlpha = 1e-6;
constexpr double kCalibQuantile = 0.999;

// Fused CPU forward / backward (x float32 contiguous on CPU, alpha a 0-dim tensor).
struct PactFn : public torch::autograd::Function<PactFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& alpha, int64_t levels) {
    const float L = static_cast<float>(levels);
    const float s = alpha.item<float>() / L;
    auto out = torch::empty_like(x, at::MemoryFormat::Contiguous);
    const float* xp = x.data_ptr<float>();
    float* op = out.data_ptr<float>();
    std::atomic<bool> bad{false};
    at::parallel_for(0, x.numel(), 32768, [&](int64_t b, int64_t e) {
      int nan = 0;
      for (int64_t i = b; i < e; ++i) {
        const float v = xp[i];
        nan += v != v ? 1 : 0;
        op[i] = fq::rne(fq::clampf(v / s, 0.f, L)) * s;
      }
      if (nan) bad = true;
    });
    if (bad) throw std::domain_error("quantizer 'pact': the input contains NaN");
    ctx->save_for_backward({x});
    ctx->saved_data["s"] = static_cast<double>(s);
    ctx->saved_data["L"] = levels;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0];
    const float s = static_cast<float>(ctx->saved_data["s"].toDouble());
    const float L = static_cast<float>(ctx->saved_data["L"].toInt());
    auto g = grads[0].contiguous();
    if (g.scalar_type() != torch::kFloat32 || !g.device().is_cpu()) g = g.to(torch::kCPU, torch::kFloat32);
    const bool need_x = ctx->needs_input_grad(0), need_a = ctx->needs_input_grad(1);
    torch::Tensor gx = need_x ? torch::empty_like(x) : torch::Tensor();
    const float* xp = x.data_ptr<float>();
    const float* gp = g.data_ptr<float>();
    float* gxp = need_x ? gx.data_ptr<float>() : nullptr;
    const int64_t N = x.numel();
    const int64_t chunk = std::max<int64_t>(32768, (N + 63) / 64);
    const int64_t nchunks = (N + chunk - 1) / chunk;
    std::vector<double> part(nchunks, 0.0);
    at::parallel_for(0, nchunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t k = cb; k < ce; ++k) {
        const int64_t b = k * chunk, e = std::min(N, b + chunk);
        // Blocks of 256: per-element terms into a buffer, then 8-lane sums. Written so that GCC vectorises
        // (if-converts) the loops: every comparison and load unconditional, selects of computed values.
        constexpr int B = 256;
        alignas(64) float tb[B];
        double acc = 0;
        for (int64_t i0 = b; i0 < e; i0 += B) {
          const int n = static_cast<int>(std::min<int64_t>(B, e - i0));
          const float* xb = xp + i0;
          const float* gb = gp + i0;
          for (int j = 0; j < n; ++j) {
            const float xn = xb[j] / s;
            const float xc = fq::clampf(xn, 0.f, L);
            const float d = (fq::rne(xc) - xc) / L;  // (qn - x/s) / L inside, 0 below 0 and above alpha
            const float top = xn >= L ? 1.f : 0.f;   // 1 for x >= alpha
            tb[j] = gb[j] * (d + top);
          }
          if (gxp) {
            float* gxb = gxp + i0;
            for (int j = 0; j < n; ++j) {
              const float xn = xb[j] / s;
              const float g = gb[j];  // unconditional load: conditional ones are not if-converted
              const float t = xn < L ? g : 0.f;
              gxb[j] = xn >= 0.f ? t : 0.f;
            }
          }
          float lane[8] = {};
          const int n8 = n / 8 * 8;
          for (int j = 0; j < n8; j += 8)
            for (int l = 0; l < 8; ++l) lane[l] += tb[j + l];
          for (int j = n8; j < n; ++j) acc += tb[j];
          for (int l = 0; l < 8; ++l) acc += lane[l];
        }
        part[k] = acc;
      }
    });
    double ga = 0;
    for (double v : part) ga += v;
    torch::Tensor galpha;
    if (need_a) galpha = torch::full({}, ga, torch::kFloat32);
    return {gx, galpha, torch::Tensor()};
  }
};

class PactQuantizer final : public SchemeQuantizer {
 public:
  PactQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {
    alpha_ = register_parameter("alpha", torch::full({}, spec.get_double("alpha", 6.0), torch::kFloat32));
  }

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    const int64_t L = (int64_t(1) << bits) - 1;
    auto a = alpha_eff();
    const bool pwl_mix = backward_ != Backward::STE && grad_ratio_ > 0 && is_training();
    if (fusable(x) && a.device().is_cpu() && !pwl_mix) {
      if (torch::GradMode::is_enabled() && (x.requires_grad() || a.requires_grad())) return PactFn::apply(x, a, L);
      torch::NoGradGuard ng;
      return PactFn::apply(x, a, L);
    }
    // Composite: out = s * (qn + xc - xc.detach()), xc = x / s where 0 <= x / s < L, else its detached clip.
    {
      torch::NoGradGuard ng;
      check_finite(x.detach().amax(), "max(x)");
    }
    auto s = a.to(x.device()) / static_cast<double>(L);
    auto xn = x / s;
    torch::Tensor qn;
    {
      torch::NoGradGuard ng;
      qn = torch::round(xn.detach()).clamp(0, static_cast<double>(L));
    }
    auto inside = (xn.detach() >= 0) & (xn.detach() < static_cast<double>(L));
    auto xc = torch::where(inside, xn, xn.detach().clamp(0, static_cast<double>(L)));
    torch::Tensor q = qn;
    if (pwl_mix) q = q + grad_ratio_ * (xc.detach() - q);
    return s * (q + (xc - xc.detach()));
  }

  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    const int b = bits();
    const float L = static_cast<float>((int64_t(1) << b) - 1);
    const float s = alpha_eff().item<float>() / L;
    Plan p;
    p.s = {s};
    finish_plan(p, x);
    if (x.numel() == 0) return encode_grid(torch::zeros(x.sizes(), x.options().dtype(torch::kFloat32)), p, b, 0.0);
    auto qf = [s, L](int64_t) { return [s, L](float v) { return fq::rne(fq::clampf(v / s, 0.f, L)); }; };
    auto qc = [&](const torch::Tensor& xd) { return torch::round(xd / p.s_t).clamp(0, static_cast<double>(L)); };
    check_finite(x.detach().amax(), "max(x)");
    return encode_grid(qn_of(x, qf, qc), p, b, 0.0);
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_pact(spec_, shape, role_); }

  void calibrate(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    if (x.numel() == 0) return;
    auto flat = x.detach().flatten().to(torch::kFloat32);
    check_finite(flat.amax(), "max(x)");
    const int64_t n = flat.numel();
    const auto rank = static_cast<int64_t>(std::ceil(kCalibQuantile * n - 1e-9));
    const int64_t k = std::min<int64_t>(n, std::max<int64_t>(1, rank));
    double v = std::get<0>(torch::kthvalue(flat, k)).item<double>();
    if (!(v > 0)) v = flat.amax().item<double>();
    if (!(v > 0)) return;  // nothing positive: keep alpha
    ++calib_n_;
    const double cur = calib_n_ == 1 ? v : alpha_.item<double>() + (v - alpha_.item<double>()) / calib_n_;
    alpha_.fill_(cur);
  }

 private:
  torch::Tensor alpha_eff() const { return alpha_.clamp_min(kMinAlpha); }
  torch::Tensor alpha_;
  int64_t calib_n_ = 0;
};

}  // namespace

QuantizerPtr make_pact(const QuantSpec& spec, Role role) { return std::make_shared<PactQuantizer>(spec, role); }

}  // namespace autoqnn::quant
