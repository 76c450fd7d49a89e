// Residual quantization (ResQ): out = 0; for i = 1..b: r = x - out; a_i = mean|r|; out += a_i * sign(r)
// with sign(0) = +1, so every element takes one of the 2^b sums  sum_i +-a_i  (per tensor or per channel).
// The levels are not affine: the Encoded stores the level table T[code] (code bit i = sign of step i; the
// table is summed in the same order as the forward, so dequantize() is bit exact) and a unit scale.
// Storage: b bits per element + C * 2^b table floats + 1 scale float.
// Activations: EMA of the alphas; alpha i is stored at index i (the reference stores them one step late).
#include <array>

#include "quantizers/fq_common.h"

namespace autoqnn::quant {

// b-bit codes + a 2^b level table per channel + the unit scale.
StorageCost storage_residual(const QuantSpec& spec, at::IntArrayRef shape, Role) {
  return storage_of(spec, shape, int64_t(1) << spec.bits, 1);
}

namespace {

constexpr int kMaxBits = 8;

class ResidualQuantizer final : public SchemeQuantizer {
  // al_[c * bits + j] = alpha of step j for channel c (host copy of the alphas of the current call).
  std::vector<float> al_;
  torch::Tensor al_t_;  // [bits] or [bits, C] on x's device

  // Chain of the first J alphas per channel (al row stride `stride`): out_J(v). J is a compile-time
  // constant so that the loops vectorise; o + (+-a) in this order is exactly what the level table sums.
  template <int J>
  static auto chain_fn(const float* al, int stride) {
    return [al, stride](int64_t c) {
      std::array<float, J> a;
      for (int j = 0; j < J; ++j) a[j] = al[c * stride + j];
      return [a](float v) {
        float o = 0.f;
        for (int j = 0; j < J; ++j) o = o + ((v - o) >= 0.f ? a[j] : -a[j]);
        return o;
      };
    };
  }

 public:
  ResidualQuantizer(const QuantSpec& spec, Role role) : SchemeQuantizer(spec, role) {
    if (role == Role::Activation) add_running("alphas", {kMaxBits});
  }

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    Plan p = plan(x, bits);
    auto qc = [&](const torch::Tensor& xd) { return chain_tensor(xd, bits).first; };
    return fq::with_bits(bits, [&](auto B) {
      return fake_quant(x, p, chain_fn<decltype(B)::value>(al_.data(), bits), qc);
    });
  }

  Encoded encode(const torch::Tensor& x) override {
    EvalScope ev(*this);
    torch::NoGradGuard ng;
    const int b = bits();
    const int64_t C = channels_of(x);
    const int64_t L = int64_t(1) << b;
    Encoded e;
    e.code_bits = b;
    e.axis = per_channel() ? axis_ : -1;
    e.scale = torch::ones({}, x.options().dtype(torch::kFloat32));
    if (x.numel() == 0) {
      e.codes = torch::zeros(x.sizes(), x.options().dtype(torch::kInt64));
      e.table = per_channel() ? torch::zeros({C, L}, e.scale.options()) : torch::zeros({L}, e.scale.options());
      return e;
    }
    plan(x, b);
    std::vector<float> table(C * L);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < L; ++k) {
        float o = 0.f;
        for (int j = 0; j < b; ++j) o = o + (((k >> j) & 1) ? al_[c * b + j] : -al_[c * b + j]);
        table[c * L + k] = o;
      }
    auto t = torch::tensor(table, torch::kFloat32);
    e.table = (per_channel() ? t.reshape({C, L}) : t).to(x.device());
    if (fusable(x)) {
      e.codes = torch::empty(x.sizes(), x.options().dtype(torch::kInt64));
      const float* xp = x.data_ptr<float>();
      int64_t* cp = e.codes.data_ptr<int64_t>();
      const float* al = al_.data();
      fq::for_each_run(fq::layout_of(x.sizes(), axis_), [&](int64_t c, int64_t lo, int64_t hi) {
        const float* a = al + c * b;
        for (int64_t i = lo; i < hi; ++i) {
          float o = 0.f;
          int64_t code = 0;
          for (int j = 0; j < b; ++j) {
            const bool pos = (xp[i] - o) >= 0.f;
            o = o + (pos ? a[j] : -a[j]);
            code |= int64_t(pos) << j;
          }
          cp[i] = code;
        }
      });
    } else {
      e.codes = chain_tensor(x.detach(), b).second;
    }
    return e;
  }

  StorageCost storage(at::IntArrayRef shape) const override { return storage_residual(spec_, shape, role_); }

 private:
  // Sum |x - out_j(x)| per channel, out_j the chain with the first j alphas in al_ (host), fused path.
  std::vector<double> residual_abs_sum(const torch::Tensor& x, int b, int j) const {
    const float* al = al_.data();
    const auto L = fq::layout_of(x.sizes(), axis_);
    return fq::with_bits(j, [&](auto J) {
      auto chain = chain_fn<decltype(J)::value>(al, b);
      return fq::reduce_runs<1>(x.data_ptr<float>(), L, [&chain](int64_t c) {
        auto o = chain(c);
        return [o](float v, float* t) { t[0] = std::fabs(v - o(v)); };
      });
    });
  }

  // Batch alphas ([bits] or [bits, C] float on x's device); fills al_ with them.
  torch::Tensor batch_alphas(const torch::Tensor& x, int b, const torch::Tensor& first) {
    const int64_t C = channels_of(x);
    al_.assign(C * b, 0.f);
    auto a0 = fq::to_host(first);
    for (int64_t c = 0; c < C; ++c) al_[c * b] = a0[c];
    if (fusable(x)) {
      const double n = static_cast<double>(count_per_channel(x));
      for (int j = 1; j < b; ++j) {
        auto s = residual_abs_sum(x, b, j);
        for (int64_t c = 0; c < C; ++c) al_[c * b + j] = static_cast<float>(s[c] / n);
      }
    } else {
      torch::NoGradGuard ng;
      auto xd = x.detach();
      torch::Tensor out = torch::zeros_like(xd);
      for (int j = 0; j < b; ++j) {
        auto r = xd - out;
        torch::Tensor a;
        if (j == 0) a = first;
        else if (!per_channel()) a = r.abs().mean().to(torch::kFloat32);
        else a = r.abs().mean(fq::reduce_dims(x.dim(), axis_)).to(torch::kFloat32);
        check_finite(a, "mean|residual|");
        auto h = fq::to_host(a);
        for (int64_t c = 0; c < C; ++c) al_[c * b + j] = h[c];
        auto ab = bcast(a, xd).to(xd.scalar_type());
        out = out + torch::where(r >= 0, ab, -ab);
      }
    }
    return alphas_tensor(x, b);
  }

  // al_ as [b] / [b, C] tensor.
  torch::Tensor alphas_tensor(const torch::Tensor& x, int b) const {
    const int64_t C = channels_of(x);
    std::vector<float> v(b * C);
    for (int64_t c = 0; c < C; ++c)
      for (int j = 0; j < b; ++j) v[j * C + c] = al_[c * b + j];
    auto t = torch::tensor(v, torch::kFloat32);
    t = per_channel() ? t.reshape({b, C}) : t.reshape({b});
    return t.to(x.device());
  }

  Plan plan(const torch::Tensor& x, int b) {
    Plan p;
    p.C = channels_of(x);
    auto first = stat_mean_abs(x);  // a_1 = mean|x|, NaN check
    if (role_ != Role::Activation) {
      batch_alphas(x, b, first);
    } else {
      // Running alphas over the first kMaxBits steps; a call at b bits updates the first b of them.
      std::vector<int64_t> shape = per_channel() ? std::vector<int64_t>{kMaxBits, p.C} : std::vector<int64_t>{kMaxBits};
      auto bufs = named_buffers(false);
      torch::Tensor buf = bufs["alphas"], init = bufs["alphas_init"];
      const bool ready = !is_training() && buf.sizes() == at::IntArrayRef(shape) && init.item<float>() != 0;
      torch::Tensor use;
      if (ready) {
        use = buf.to(x.device());
      } else {
        auto batch = batch_alphas(x, b, first);  // [b] / [b, C]
        torch::Tensor full = buf.sizes() == at::IntArrayRef(shape) ? buf.detach().clone().to(x.device())
                                                                   : torch::zeros(shape, batch.options());
        full.narrow(0, 0, b).copy_(batch);
        use = track("alphas", full);
      }
      auto h = fq::to_host(use.narrow(0, 0, b).contiguous());  // [b] or [b, C] row-major
      al_.assign(p.C * b, 0.f);
      for (int64_t c = 0; c < p.C; ++c)
        for (int j = 0; j < b; ++j) al_[c * b + j] = h[j * p.C + c];
    }
    // out = chain value * 1; PWL_C range = [lowest, highest] level (all -, all +), summed as the forward does.
    p.s.assign(p.C, 1.f);
    p.xlo.resize(p.C);
    p.xhi.resize(p.C);
    for (int64_t c = 0; c < p.C; ++c) {
      float lo = 0.f, hi = 0.f;
      for (int j = 0; j < b; ++j) {
        lo = lo + -al_[c * b + j];
        hi = hi + al_[c * b + j];
      }
      p.xlo[c] = lo;
      p.xhi[c] = hi;
    }
    finish_plan(p, x);
    al_t_ = alphas_tensor(x, b);
    return p;
  }

  // Composite chain with the alphas of the current call: {value, codes}.
  std::pair<torch::Tensor, torch::Tensor> chain_tensor(const torch::Tensor& xd, int b) const {
    torch::Tensor out = torch::zeros_like(xd);
    torch::Tensor code = torch::zeros(xd.sizes(), xd.options().dtype(torch::kInt64));
    for (int j = 0; j < b; ++j) {
      auto ab = bcast(al_t_[j], xd).to(xd.scalar_type());
      auto pos = (xd - out) >= 0;
      out = out + torch::where(pos, ab, -ab);
      code = code + (pos.to(torch::kInt64) * (int64_t(1) << j));
    }
    return {out, code};
  }
};

}  // namespace

QuantizerPtr make_residual(const QuantSpec& spec, Role role) { return std::make_shared<ResidualQuantizer>(spec, role); }

}  // namespace autoqnn::quant
