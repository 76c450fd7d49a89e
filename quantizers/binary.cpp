// Binary weights (BWN): out = alpha * sign(x) with alpha = mean|x| (per tensor or per channel), sign(0) = +1.
// Encoded on the half-integer grid qn in {-0.5, +0.5} (1-bit codes, grid_base -0.5) with scale 2 alpha, so
// qn * scale = +-alpha exactly and no table is stored.
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// 1-bit codes + one scale per channel.
StorageCost storage_binary(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 1); }

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

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    Plan p = plan(x);
    return fake_quant(x, p, qf(), qc());
  }

  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    if (x.numel() == 0) return encode_empty(x, 1, -0.5, false);
    Plan p = plan(x);
    return encode_grid(qn_of(x, qf(), qc()), p, 1, -0.5);
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_binary(spec_, shape, role_); }

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
