// mu-L2Q: beta = mean(x), alpha = lambda_b * std(x);
//   c = clip(round((x - beta) / (alpha + 1e-7) - 0.5), -2^(b-1), 2^(b-1) - 1) + 0.5,  out = c * alpha + beta.
// The + 0.5 of the original is kept (2^b half-integer levels; the PyTorch port drops it). Affine half-integer
// grid, scale alpha and offset beta per tensor or per channel. A constant tensor gives alpha = 0 and
// out = beta (its mean). Weights only.
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// b-bit codes + alpha and beta per channel.
StorageCost storage_mul2q(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 2); }

namespace {

constexpr float kMul2qLambda[8] = {1.59502f, .99529f, .58722f, .33589f, .18944f, .10571f, .05708f, .03048f};

class Mul2Quantizer final : public SchemeQuantizer {
 public:
  Mul2Quantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {}

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    std::vector<float> ac;
    torch::Tensor ac_t;
    Plan p = plan(x, bits, ac, ac_t);
    fq::HalfGrid g(ac.data(), p.off.data(), bits);
    auto qc = [&](const torch::Tensor& xd) { return g.tensor(xd, bcast(ac_t, xd), bcast(p.off_t, xd)); };
    return fake_quant(x, p, g, qc);
  }

  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    const int b = bits();
    const double base = -std::ldexp(1.0, b - 1) + 0.5;
    if (x.numel() == 0) return encode_empty(x, b, base, true);
    std::vector<float> ac;
    torch::Tensor ac_t;
    Plan p = plan(x, b, ac, ac_t);
    fq::HalfGrid g(ac.data(), p.off.data(), b);
    auto qn = qn_of(x, g, [&](const torch::Tensor& xd) { return g.tensor(xd, bcast(ac_t, xd), bcast(p.off_t, xd)); });
    return encode_grid(qn, p, b, base);
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_mul2q(spec_, shape, role_); }

 private:
  Plan plan(const torch::Tensor& x, int bits, std::vector<float>& ac, torch::Tensor& ac_t) {
    Plan p;
    p.C = channels_of(x);
    auto sm = stat_std_mean(x);
    auto sd = fq::to_host(sm.first), mean = fq::to_host(sm.second);
    p.s.resize(p.C);
    p.off.resize(p.C);
    ac.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) {
      p.s[c] = kMul2qLambda[bits - 1] * sd[c];
      p.off[c] = mean[c];
      ac[c] = p.s[c] + 1e-7f;
    }
    ac_t = fq::from_host(ac, per_channel(), x);
    set_range(p, -std::ldexp(1.0, bits - 1) + 0.5, std::ldexp(1.0, bits - 1) - 0.5);
    finish_plan(p, x);
    return p;
  }
};

}  // namespace

QuantizerPtr make_mul2q(const QuantSpec& spec, Role role) { return std::make_shared<Mul2Quantizer>(spec, role); }

}  // namespace autoqnn::quant
