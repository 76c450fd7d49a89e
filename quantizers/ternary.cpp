// Ternary weight networks (TWN): delta = 0.7 mean|x|; t = sign(x) if |x| > delta else 0;
// alpha = mean(|x| over t != 0); out = alpha * t. Levels {-alpha, 0, alpha}: affine grid qn in {-1, 0, 1}
// (2-bit codes, grid_base -1), scale alpha per tensor or per channel.
// Activation variant: EMA of delta and alpha (the running values are used in eval).
#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// 2-bit codes + alpha per channel.
StorageCost storage_ternary(const QuantSpec& spec, at::IntArrayRef shape, Role) { return storage_of(spec, shape, 1); }

namespace {

class TernaryQuantizer final : public SchemeQuantizer {
 public:
  TernaryQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {
    add_activation_running({"delta", "alpha"});
  }

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    std::vector<float> delta;
    Plan p = plan(x, delta);
    return run(p, delta, [&](auto qf, auto qc) { return fake_quant(x, p, qf, qc); });
  }

  Encoded encode(const torch::Tensor& x) override {
    EvalScope ev(*this);
    torch::NoGradGuard ng;
    if (x.numel() == 0) return encode_empty(x, 2, -1.0, false);
    std::vector<float> delta;
    Plan p = plan(x, delta);
    auto qn = run(p, delta, [&](auto qf, auto qc) { return qn_of(x, qf, qc); });
    return encode_grid(qn, p, 2, -1.0);
  }

  torch::Tensor levels(const torch::Tensor& x, int64_t channel = 0) override { return grid_levels(x, channel, -1, 1); }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_ternary(spec_, shape, role_); }

 private:
  // Whether the eval forward can skip the batch alpha (running value initialised, same shape).
  bool running_ready(const std::string& name, at::IntArrayRef shape) {
    if (role_ != Role::Activation || is_training()) return false;
    auto bufs = named_buffers(false);
    auto* buf = bufs.find(name);
    auto* init = bufs.find(name + "_init");
    return buf && init && buf->sizes() == shape && init->item<float>() != 0;
  }

  // alpha = sum(|x| where |x| > delta) / count per channel (0 when nothing exceeds delta).
  torch::Tensor batch_alpha(const torch::Tensor& x, const std::vector<float>& delta, const torch::Tensor& delta_t) {
    torch::NoGradGuard ng;
    const int64_t C = channels_of(x);
    std::vector<float> alpha(C);
    if (fusable(x)) {
      const float* d = delta.data();
      auto sums = fq::reduce_runs<2>(x.data_ptr<float>(), fq::layout_of(x.sizes(), axis_), [d](int64_t c) {
        const float dc = d[c];
        return [dc](float v, float* t) {
          const float a = std::fabs(v);
          t[0] = a > dc ? a : 0.f;
          t[1] = a > dc ? 1.f : 0.f;
        };
      });
      for (int64_t c = 0; c < C; ++c) alpha[c] = sums[2 * c + 1] > 0 ? float(sums[2 * c] / sums[2 * c + 1]) : 0.f;
      return fq::from_host(alpha, per_channel(), x);
    }
    auto a = x.detach().abs();
    auto m = (a > bcast(delta_t, a)).to(a.scalar_type());
    torch::Tensor s, n;
    if (!per_channel()) {
      s = (a * m).sum();
      n = m.sum();
    } else {
      auto d = fq::reduce_dims(x.dim(), axis_);
      s = (a * m).sum(d);
      n = m.sum(d);
    }
    return torch::where(n > 0, s / n.clamp_min(1), torch::zeros_like(s)).to(torch::kFloat32);
  }

  Plan plan(const torch::Tensor& x, std::vector<float>& delta) {
    Plan p;
    p.C = channels_of(x);
    auto delta_batch = stat_mean_abs(x) * 0.7f;  // NaN check included
    std::vector<int64_t> shape = per_channel() ? std::vector<int64_t>{p.C} : std::vector<int64_t>{};
    torch::Tensor alpha_t;
    if (running_ready("alpha", shape) && running_ready("delta", shape)) {
      auto bufs = named_buffers(false);
      delta = fq::to_host(bufs["delta"]);
      alpha_t = bufs["alpha"].to(x.device());
    } else {
      auto db = fq::to_host(delta_batch);
      auto ab = batch_alpha(x, db, fq::from_host(db, per_channel(), x));
      delta = fq::to_host(track("delta", delta_batch));
      alpha_t = track("alpha", ab);
    }
    p.s = fq::to_host(alpha_t);
    set_range(p, -1, 1);
    finish_plan(p, x);
    if (cuda_fusable(x)) {  // qn = (x > delta) - (x < -delta)
      p.grid.mode = 1;
      p.grid.a = fq::from_host(delta, per_channel(), x);
    }
    return p;
  }

  template <class F>
  torch::Tensor run(const Plan& p, const std::vector<float>& delta, F&& f) {
    const float* d = delta.data();
    auto qf = [d](int64_t c) {
      const float dc = d[c];
      // Both comparisons unconditional (a nested ?: is not if-converted under -ftrapping-math: no vectors).
      return [dc](float v) { return (v > dc ? 1.f : 0.f) - (v < -dc ? 1.f : 0.f); };
    };
    auto qc = [&](const torch::Tensor& xd) {
      auto dt = bcast(fq::from_host(delta, per_channel(), xd), xd);
      return (xd > dt).to(xd.scalar_type()) - (xd < -dt).to(xd.scalar_type());
    };
    return f(qf, qc);
  }
};

}  // namespace

QuantizerPtr make_ternary(const QuantSpec& spec, Role role) { return std::make_shared<TernaryQuantizer>(spec, role); }

}  // namespace autoqnn::quant
