// AFP: adaptive floating point (Liu et al., ICCV 2021). N = 1 + E + M bits (sign, exponent, mantissa).
//   r_max = 2 - 2^-M,  e_hi = ceil(log2(max|W| / r_max)),  e_lo = e_hi + 1 - 2^E
//   magnitudes = {2^(e_lo+1) k 2^-M : k < 2^M} (subnormal binade, incl. 0) U {2^e (1 + k 2^-M) : e_lo < e <= e_hi}
//   out = sign(W) * nearest magnitude of |W|          (per tensor, or per channel with :per_channel)
// Implemented as qn = nearest level of W / 2^e_hi in the fixed table for e_hi = 0 and out = qn * 2^e_hi
// (the power-of-two scale makes both steps exact). E is the spec's e= (default 2); E is fixed, not searched.
// Example max|W| = .8, E2M1: {0, .125, .25, .375, .5, .75, 1, 1.5}. STE backward (gradient 1 for W).
#include <cmath>
#include <stdexcept>

#include "quantizers/pow2.h"

namespace autoqnn::quant {
namespace pow2 {

std::vector<double> afp_magnitudes(int E, int M) {
  if (E < 1 || M < 0 || E + M > 16) throw std::out_of_range("afp_magnitudes: E=" + std::to_string(E) + " M=" + std::to_string(M));
  const int e_lo = 1 - (1 << E);  // e_hi = 0
  std::vector<double> m;
  for (int k = 0; k < (1 << M); ++k) m.push_back(std::ldexp(double(k), e_lo + 1 - M));
  for (int e = e_lo + 1; e <= 0; ++e)
    for (int k = 0; k < (1 << M); ++k) m.push_back(std::ldexp(1.0 + std::ldexp(double(k), -M), e));
  return m;
}

}  // namespace pow2

namespace {
// The spec's e (exponent bits, default 2).
int afp_e(const QuantSpec& spec) { return spec.get_int("e", 2); }
// Mantissa bits bits - 1 - E; throws std::invalid_argument naming the quantizer unless E >= 1 and M >= 0.
int afp_mantissa(const QuantSpec& spec, int E, int bits) {
  const int M = bits - 1 - E;
  if (E < 1 || M < 0)
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': afp e=" + std::to_string(E) +
                                " is invalid at " + std::to_string(bits) +
                                " bits: e (exponent bits) must be in [1, bits-1] (mantissa = bits - 1 - e >= 0)");
  return M;
}
}  // namespace

void validate_afp(const QuantSpec& spec, Role) { afp_mantissa(spec, afp_e(spec), spec.bits); }

// b-bit codes + the magnitude table (2^b - 1 signed levels) + the power-of-two scale per channel.
StorageCost storage_afp(const QuantSpec& spec, at::IntArrayRef shape, Role) {
  return storage_of(spec, shape, 1, (int64_t(1) << spec.bits) - 1);
}

namespace {

class AfpQuantizer final : public pow2::Pow2Quantizer {
 public:
  AfpQuantizer(QuantSpec spec, Role role) : Pow2Quantizer(std::move(spec), role), E_(afp_e(spec_)) {}

  torch::Tensor quantize(const torch::Tensor& x, int bits) override { return fake_quant(x, plan(x, bits)); }
  Encoded encode(const torch::Tensor& x) override { return encode_plan(x, plan(x, bits()), bits()); }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_afp(spec_, shape, role_); }

 private:
  int mantissa(int bits) const { return afp_mantissa(spec_, E_, bits); }

  pow2::Plan plan(const torch::Tensor& x, int bits) {
    const int M = mantissa(bits);
    const double r_max = 2.0 - std::ldexp(1.0, -M);
    auto amax = absmax(x);
    pow2::Plan p;
    p.C = static_cast<int64_t>(amax.size());
    for (double m : amax) {
      // e_hi = the smallest integer with 2^e_hi r_max >= max|W| (exact); max = 0 -> 0
      int e = 0;
      if (m > 0) {
        e = static_cast<int>(std::ceil(std::log2(m / r_max)));
        while (std::ldexp(r_max, e) < m) ++e;
        while (std::ldexp(r_max, e - 1) >= m) --e;
      }
      e = std::max(-126, std::min(127, e));  // 2^e stays a normal float32
      p.div.push_back(static_cast<float>(std::ldexp(1.0, e)));
    }
    p.scale = p.div;
    p.table = cache_.get(bits, x, [&] { return pow2::make_table(pow2::signed_levels(pow2::afp_magnitudes(E_, M))); });
    p.format = pow2::Plan::kFloat;  // the format itself: M mantissa bits, smallest normal exponent e_lo + 1
    p.fmt_m = M;
    p.fmt_emin = 2 - (1 << E_);
    p.lo = p.table.lo;
    p.hi = p.table.hi;
    return p;
  }

  int E_ = 2;
  pow2::TableCache cache_;
};

}  // namespace

QuantizerPtr make_afp(const QuantSpec& spec, Role role) { return std::make_shared<AfpQuantizer>(spec, role); }

}  // namespace autoqnn::quant
