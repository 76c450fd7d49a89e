// VecQ: a = lambda_b * std(x) + 1e-7; c = clip(round(x / a - 0.5), -2^(b-1), 2^(b-1) - 1) + 0.5 (2^b half-integer
// levels); out = c * s with the least-squares scale s = <x, c> / <c, c> (the original VecQ; the PyTorch port's
// ||x|| / ||c|| is weaker). Per tensor or per channel (std, s per channel). Weights only.
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// b-bit codes + the output scale per channel (HalfGridQuantizer::storage).
StorageCost storage_vecq(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 1); }

namespace {

constexpr float kVecqLambda[8] = {1.0f, .9957f, .5860f, .3352f, .1881f, .1041f, .0569f, .0308f};

class VecQuantizer final : public HalfGridQuantizer {
 public:
  VecQuantizer(const QuantSpec& spec, Role role) : HalfGridQuantizer(spec, role) {}

 protected:
  Plan plan(const torch::Tensor& x, int bits, std::vector<float>& a, torch::Tensor& a_t) override {
    Plan p;
    p.C = channels_of(x);
    auto sd = fq::to_host(stat_std_mean(x).first);
    a.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) a[c] = kVecqLambda[bits - 1] * sd[c] + 1e-7f;
    a_t = fq::from_host(a, per_channel(), x);
    fq::HalfGrid g(a.data(), nullptr, bits);
    // Least-squares scale: <x, c> / <c, c> per channel.
    std::vector<double> xc(p.C), cc(p.C);
    if (fusable(x)) {
      auto sums = fq::reduce_runs<2>(x.data_ptr<float>(), fq::layout_of(x.sizes(), axis_), [&g](int64_t c) {
        auto q = g(c);
        return [q](float v, float* t) {
          const float qv = q(v);
          t[0] = v * qv;
          t[1] = qv * qv;
        };
      });
      for (int64_t c = 0; c < p.C; ++c) {
        xc[c] = sums[2 * c];
        cc[c] = sums[2 * c + 1];
      }
    } else {
      torch::NoGradGuard ng;
      auto xd = x.detach();
      auto q = g.tensor(xd, bcast(a_t, xd), {}).to(torch::kFloat64);
      auto xdd = xd.to(torch::kFloat64);
      torch::Tensor s1, s2;
      if (!per_channel()) {
        s1 = (xdd * q).sum();
        s2 = (q * q).sum();
      } else {
        auto d = fq::reduce_dims(x.dim(), axis_);
        s1 = (xdd * q).sum(d);
        s2 = (q * q).sum(d);
      }
      auto h1 = s1.cpu().contiguous(), h2 = s2.cpu().contiguous();
      for (int64_t c = 0; c < p.C; ++c) {
        xc[c] = h1.data_ptr<double>()[c];
        cc[c] = h2.data_ptr<double>()[c];
      }
    }
    p.s.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) p.s[c] = cc[c] > 0 ? static_cast<float>(xc[c] / cc[c]) : 0.f;
    set_range(p, -std::ldexp(1.0, bits - 1) + 0.5, std::ldexp(1.0, bits - 1) - 0.5);
    finish_plan(p, x);
    return p;
  }
};

}  // namespace

QuantizerPtr make_vecq(const QuantSpec& spec, Role role) { return std::make_shared<VecQuantizer>(spec, role); }

}  // namespace autoqnn::quant
