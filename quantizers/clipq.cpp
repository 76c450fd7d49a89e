// ClipQ: VecQ's half-integer levels with step a = lambda_b * std(x) and no rescale:
//   c = clip(round(x / a - 0.5), -2^(b-1), 2^(b-1) - 1) + 0.5,  out = c * a,
// and a clipped straight-through gradient: zero outside the level range [-(2^(b-1) - 0.5) a, (2^(b-1) - 0.5) a]
// whatever grad= says (grad=ste is taken as pwl_c; grad=pwl keeps its r with the clip), as in the reference.
// a = 0 (constant input) gives an all-zero output (the coding step falls back to 1). Weights only.
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// b-bit codes + the output scale per channel (HalfGridQuantizer::storage).
StorageCost storage_clipq(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 1); }

namespace {

constexpr float kClipqLambda[8] = {1.0f, .9957f, .5860f, .3352f, .1881f, .1041f, .0569f, .0308f};

class ClipQuantizer final : public HalfGridQuantizer {
 public:
  ClipQuantizer(const QuantSpec& spec, Role role) : HalfGridQuantizer(spec, role) { backward_ = Backward::PWL_C; }

 protected:
  Plan plan(const torch::Tensor& x, int bits, std::vector<float>& ac, torch::Tensor& ac_t) override {
    Plan p;
    p.C = channels_of(x);
    auto sd = fq::to_host(stat_std_mean(x).first);
    p.s.resize(p.C);
    ac.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) {
      p.s[c] = kClipqLambda[bits - 1] * sd[c];
      ac[c] = p.s[c] > 0 ? p.s[c] : 1.f;
    }
    ac_t = fq::from_host(ac, per_channel(), x);
    set_range(p, -std::ldexp(1.0, bits - 1) + 0.5, std::ldexp(1.0, bits - 1) - 0.5);
    finish_plan(p, x);
    return p;
  }
};

}  // namespace

QuantizerPtr make_clipq(const QuantSpec& spec, Role role) { return std::make_shared<ClipQuantizer>(spec, role); }

}  // namespace autoqnn::quant
