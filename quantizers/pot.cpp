// PoT: powers of two as in the reference (AutoQNN-pytorch).
//   a = lambda_b * std(W) + 1e-7, lambda = 1, .9, .4, .03 for b = 1..4   (per tensor or per channel)
//   e = clip(round(log2|W / a|), 0, 2^(b-1) - 1),  out = sign(W) * 2^e * a
// Levels: +-a {1, 2, 4, .., 2^(2^(b-1)-1)} -- 2^b values, no zero (W = 0 maps to +a). Rounding to the
// nearest level in the log domain (boundaries float(sqrt 2) 2^e; bucketize on the composite path, exponent
// bits in the fused CPU kernel -- same result, see pow2.h). STE backward (gradient 1 for W; grad=pwl_c
// clips to the level range).
// Constant tensors (std = 0) use a = |value|, which represents them exactly; all-zero gives +1e-7.
#include <cmath>
#include <stdexcept>

#include "quantizers/pow2.h"

namespace autoqnn::quant {

// b-bit codes + the 2^b level table + a per channel.
StorageCost storage_pot(const QuantSpec& spec, at::IntArrayRef shape, Role) {
  return storage_of(spec, shape, 1, int64_t(1) << spec.bits);
}

namespace {

double pot_lambda(int bits) {
  static const double t[4] = {1.0, 0.9, 0.4, 0.03};
  return t[bits - 1];
}

class PotQuantizer final : public pow2::Pow2Quantizer {
 public:
  using Pow2Quantizer::Pow2Quantizer;

  torch::Tensor quantize(const torch::Tensor& x, int bits) override { return fake_quant(x, plan(x, bits)); }
  Encoded encode(const torch::Tensor& x) override { return encode_plan(x, plan(x, bits()), bits()); }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_pot(spec_, shape, role_); }

 private:
  void check_bits(int bits) const {
    if (bits < 1 || bits > 4)
      throw std::invalid_argument(prefix() + "pot supports 1..4 bits, got " + std::to_string(bits));
  }

  static std::vector<double> levels_for(int bits) {
    const int max_exp = (1 << (bits - 1)) - 1;
    std::vector<double> m;
    for (int e = 0; e <= max_exp; ++e) m.push_back(std::ldexp(1.0, e));
    return pow2::signed_levels(m);
  }

  pow2::Plan plan(const torch::Tensor& x, int bits) {
    check_bits(bits);
    std::vector<double> sd, mu;
    std_mean(x, &sd, &mu);
    pow2::Plan p;
    p.C = static_cast<int64_t>(sd.size());
    for (int64_t c = 0; c < p.C; ++c) {
      // std = 0 (constant c): a = |c| represents it exactly (level 1); all-zero: a = 1e-7.
      const double a = sd[c] > 0 ? sd[c] * pot_lambda(bits) + 1e-7 : (mu[c] != 0 ? std::fabs(mu[c]) : 1e-7);
      p.div.push_back(static_cast<float>(a));
    }
    p.scale = p.div;
    p.table = cache_.get(bits, x, [&] { return pow2::make_table(levels_for(bits), /*geometric=*/true); });
    p.format = pow2::Plan::kPow2;
    p.lo = p.table.lo;
    p.hi = p.table.hi;
    return p;
  }

  pow2::TableCache cache_;
};

}  // namespace

QuantizerPtr make_pot(const QuantSpec& spec, Role role) { return std::make_shared<PotQuantizer>(spec, role); }

}  // namespace autoqnn::quant
