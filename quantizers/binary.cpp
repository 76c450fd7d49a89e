// Binary weights (BWN): out = alpha * sign(x) with alpha = mean|x| (per tensor or per channel), sign(0) = +1.
// Encoded on the half-integer grid qn in {-0.5, +0.5} (1-bit codes, grid_base -0.5) with scale 2 alpha, so
// qn * scale = +-alpha exactly and no table is stored.
#include "quantizers/fq_common.h"
#include "quantizers/schemes.h"

namespace autoqnn::quant {
namespace {

class BinaryQuantizer final : public SchemeQuantizer {
  // Level functions (defined first: their return types are deduced).
  static auto qf() {
    return [](int64_t) { return [](float v) { return v >= 0.f ? 0.5f : -0.5f; }; };
  }
  static auto qc() {
    return [](const torch::Tensor& xd) { return torch::where(xd >= 0, 0.5, -0.5).to(xd.scalar_type()); };
  }

 public:
  BinaryQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {}

  torch::Tensor quantize(const torch::Tensor& x, int bits) override {
    check_bits(bits);
    if (x.numel() == 0) return x.clone();
    Plan p = plan(x);
    return fake_quant(x, p, qf(), qc());
  }

  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    if (x.numel() == 0) return encode_empty(x, 1, -0.5, false);
    Plan p = plan(x);
    return encode_grid(qn_of(x, qf(), qc()), p, 1, -0.5);
  }

  StorageCost storage(at::IntArrayRef shape) const override {
    StorageCost c;
    c.numel = c10::multiply_integers(shape);
    c.code_bits = 1;
    c.aux_floats = num_channels(shape);
    return c;
  }

 private:
  Plan plan(const torch::Tensor& x) {
    Plan p;
    p.C = channels_of(x);
    auto m = fq::to_host(stat_mean_abs(x));
    p.s.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) p.s[c] = 2.f * m[c];
    set_range(p, -0.5, 0.5);
    finish_plan(p, x);
    return p;
  }
};

}  // namespace

QuantizerPtr make_binary(const QuantSpec& spec, Role role) { return std::make_shared<BinaryQuantizer>(spec, role); }

}  // namespace autoqnn::quant
