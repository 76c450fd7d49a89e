// Shared machinery of the "affine" schemes (binary, twn, fixed, uniform, zoomq, pact, resq, vecq, mul2q, clipq).
//
// Internal header (not part of the public contract). Every scheme computes   out = qn * s + off   per tensor
// or per channel. The statistics (s, off, clip range) are small [C] vectors computed once per call; the
// element-wise work runs either
//   * in a fused CPU loop (float32, contiguous input): one read of x, one write of out (+ a 1-byte mask for
//     PWL_C), and a backward that is the identity (STE / PWL) or one masked copy (PWL_C); or
//   * as a composite of tensor ops (CUDA, other dtypes, non-contiguous input, PWL mixing with r > 0).
// Both paths compute qn with the same IEEE operations, so they agree; encode() always takes the same path as
// forward() for the same input, so encode().dequantize() reproduces the eval forward bit for bit.
//
// Backward rule (all schemes): the rule of Quantizer::ste() applied in input units with detached statistics:
//   STE / PWL: d out / d x = 1;   PWL_C: d out / d x = 1 for x in [xlo, xhi] (the level range), else 0;
//   PWL (r > 0, training only): forward value q + r (x_c - q), gradient as above.
#pragma once
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "quantizers/cuda_dispatch.h"
#include "quantizers/quantizer.h"

namespace autoqnn::quant {
namespace fq {

// A tensor seen as [outer, C, inner] around the channel axis (per tensor: outer = C = 1). Shared by both
// families (the power-of-two engine, pow2.cpp, uses it too).
struct Layout {
  int64_t outer = 1, C = 1, inner = 1;
  int64_t numel() const { return outer * C * inner; }
  int64_t per_channel() const { return outer * inner; }  // elements of one channel
};
Layout layout_of(at::IntArrayRef shape, int64_t axis);
// CPU, float32, contiguous and non-empty: the fused CPU loops apply (when the quantizer's fused() is on;
// see SchemeQuantizer::fusable).
bool cpu_fusable(const torch::Tensor& x);
// Dimensions reduced by a per-channel statistic (all but `axis`).
std::vector<int64_t> reduce_dims(int64_t dim, int64_t axis);

// Round half to even for |v| < 2^22 (the default FP rounding mode), vectorisable with plain SSE2.
// Identical to std::nearbyint / torch::round there; callers clamp first.
inline float rne(float v) {
#ifdef __FAST_MATH__
  return std::nearbyint(v);  // the magic-number trick below is folded away under -ffast-math
#else
  const float M = 12582912.0f;  // 1.5 * 2^23
  return (v + M) - M;
#endif
}
inline float clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// f(c, begin, end) on contiguous index ranges that share channel c, in parallel.
template <class F>
void for_each_run(const Layout& L, const F& f, int64_t grain = 32768) {
  const int64_t N = L.numel();
  at::parallel_for(0, N, grain, [&](int64_t b, int64_t e) {
    int64_t i = b;
    while (i < e) {
      const int64_t blk = i / L.inner;
      const int64_t c = blk % L.C;
      const int64_t stop = std::min(e, (blk + 1) * L.inner);
      f(c, i, stop);
      i = stop;
    }
  });
}

// Per-channel sums of K terms: g(c) returns a callable (float v, float* t) writing K terms for element v.
// Deterministic (fixed chunking, independent of the thread count); float partial sums over blocks of 256,
// double totals. The terms of a block are first written to a small buffer, then summed: both loops
// vectorise (write terms as selects, `cond ? a : 0.f`, not as bool-to-float casts, which GCC leaves scalar).
template <int K, class G>
std::vector<double> reduce_runs(const float* x, const Layout& L, const G& g) {
  constexpr int B = 256;
  const int64_t N = L.numel();
  const int64_t chunk = std::max<int64_t>(32768, (N + 63) / 64);
  const int64_t nchunks = std::max<int64_t>(1, (N + chunk - 1) / chunk);
  std::vector<double> part(static_cast<size_t>(nchunks * L.C * K), 0.0);
  at::parallel_for(0, nchunks, 1, [&](int64_t cb, int64_t ce) {
    alignas(64) float tb[K][B];
    for (int64_t k = cb; k < ce; ++k) {
      double* acc = part.data() + k * L.C * K;
      const int64_t b = k * chunk, e = std::min(N, b + chunk);
      int64_t i = b;
      while (i < e) {
        const int64_t blk = i / L.inner;
        const int64_t c = blk % L.C;
        const int64_t stop = std::min(e, (blk + 1) * L.inner);
        auto term = g(c);
        for (int64_t j0 = i; j0 < stop; j0 += B) {
          const int n = static_cast<int>(std::min<int64_t>(B, stop - j0));
          const float* xp = x + j0;
          for (int j = 0; j < n; ++j) {
            float t[K];
            term(xp[j], t);
            for (int q = 0; q < K; ++q) tb[q][j] = t[q];
          }
          for (int q = 0; q < K; ++q) {
            float lane[8] = {};
            const int n8 = n / 8 * 8;
            for (int j = 0; j < n8; j += 8)
              for (int l = 0; l < 8; ++l) lane[l] += tb[q][j + l];
            double s = 0;
            for (int j = n8; j < n; ++j) s += tb[q][j];
            for (int l = 0; l < 8; ++l) s += lane[l];
            acc[c * K + q] += s;
          }
        }
        i = stop;
      }
    }
  });
  std::vector<double> out(static_cast<size_t>(L.C * K), 0.0);
  for (int64_t k = 0; k < nchunks; ++k)
    for (int64_t j = 0; j < L.C * K; ++j) out[j] += part[k * L.C * K + j];
  return out;
}

// Calls f(std::integral_constant<int, B>{}) for the runtime value b in [1, 8] (compile-time loop counts
// vectorise; runtime ones do not).
template <class F>
decltype(auto) with_bits(int b, F&& f) {
  switch (b) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

// Where the target has fast FMA, a compiler may contract q * s + off into one fma (GCC does by default in
// GNU mode), which would break bit-exactness with Encoded::dequantize (two roundings). There the offset is
// added by a separate tensor op.
#if defined(__FP_FAST_FMAF) || defined(__FP_FAST_FMA)
constexpr bool kFuseOffset = false;
#else
constexpr bool kFuseOffset = true;
#endif

// out[i] = q_c(x[i]) * s[c] (+ off[c]);  mask[i] = xlo[c] <= x[i] <= xhi[c] (when mask != nullptr).
// qf(c) returns the per-channel level function float -> float (normalised level qn).
template <class QF>
void map_fq(const Layout& L, const float* x, float* out, bool* mask, const QF& qf, const float* s,
            const float* off, const float* xlo, const float* xhi) {
  for_each_run(L, [&](int64_t c, int64_t b, int64_t e) {
    auto q = qf(c);
    const float sc = s[c];
    const float oc = off && kFuseOffset ? off[c] : 0.f;
    const float lo = xlo[c], hi = xhi[c];
    // One loop per variant (each vectorises); the mask is written in the same pass as the output.
    if (off && kFuseOffset) {
      if (mask)
        for (int64_t i = b; i < e; ++i) {
          const float v = x[i];
          out[i] = q(v) * sc + oc;
          mask[i] = (v >= lo) & (v <= hi);
        }
      else
        for (int64_t i = b; i < e; ++i) out[i] = q(x[i]) * sc + oc;
    } else {
      if (mask)
        for (int64_t i = b; i < e; ++i) {
          const float v = x[i];
          out[i] = q(v) * sc;
          mask[i] = (v >= lo) & (v <= hi);
        }
      else
        for (int64_t i = b; i < e; ++i) out[i] = q(x[i]) * sc;
    }
  });
}
// qn[i] = q_c(x[i]).
template <class QF>
void map_qn(const Layout& L, const float* x, float* qn, const QF& qf) {
  for_each_run(L, [&](int64_t c, int64_t b, int64_t e) {
    auto q = qf(c);
    for (int64_t i = b; i < e; ++i) qn[i] = q(x[i]);
  });
}

// Half-integer grid of b bits (VecQ / muL2Q / ClipQ): qn = clip(round((x - o) / a - 0.5), -2^(b-1), 2^(b-1) - 1)
// + 0.5 with coding step a[c] and centre o[c] (o == nullptr: 0).
struct HalfGrid {
  const float* a;
  const float* o;
  float lo, hi;
  HalfGrid(const float* a_, const float* o_, int bits)
      : a(a_), o(o_), lo(-std::ldexp(1.f, bits - 1)), hi(std::ldexp(1.f, bits - 1) - 1) {}
  auto operator()(int64_t c) const {
    const float ac = a[c], oc = o ? o[c] : 0.f, l = lo, h = hi;
    return [ac, oc, l, h](float v) { return rne(clampf((v - oc) / ac - 0.5f, l, h)) + 0.5f; };
  }
  // Composite twin; a_t / o_t broadcastable to x (o_t may be undefined).
  torch::Tensor tensor(const torch::Tensor& x, const torch::Tensor& a_t, const torch::Tensor& o_t) const {
    auto y = o_t.defined() ? (x - o_t) : x;
    return torch::round(y / a_t - 0.5).clamp(lo, hi) + 0.5;
  }
};

// g where mask, else 0 (fused on CPU).
torch::Tensor masked_grad(const torch::Tensor& g, const torch::Tensor& mask);

// Autograd node: forward value = compute() exactly; backward passes the gradient to x, masked where a mask
// was produced. compute() returns {value, mask-or-undefined}.
using ValueAndMask = std::pair<torch::Tensor, torch::Tensor>;
torch::Tensor straight_through(const torch::Tensor& x, const std::function<ValueAndMask()>& compute);

// Contiguous host copy of a [] / [C] float statistic.
std::vector<float> to_host(const torch::Tensor& t);
// [] (C == 1 and per tensor) or [C] float32 tensor on `like`'s device from host values.
torch::Tensor from_host(const std::vector<float>& v, bool per_channel, const torch::Tensor& like);

}  // namespace fq

// Base class of the schemes in this family: statistic helpers, the fused / composite fake-quantisation with
// the backward rule, affine encoding. Constructed by the registry from a validated spec (validate_spec: role,
// bits, parameters), which it does not check again.
class SchemeQuantizer : public Quantizer {
 public:
  using Quantizer::Quantizer;

  // Bits checked, an empty x returned as a copy, else quantize_nonempty.
  torch::Tensor quantize(const torch::Tensor& x, int bits) final {
    check_bits(bits);
    if (x.numel() == 0) return x.clone();
    return quantize_nonempty(x, bits);
  }

 protected:
  // The scheme's quantize(x, bits) for a valid bitwidth and a non-empty x.
  virtual torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) = 0;

  // Dequantisation data of one call (host vectors of size C; tensors [] or [C] on x's device).
  struct Plan {
    int64_t C = 1;
    std::vector<float> s, off, xlo, xhi;  // off empty = no offset
    torch::Tensor s_t, off_t, xlo_t, xhi_t;
    // The level function in the fused CUDA kernel's terms (set by schemes that have one; else composite).
    cudak::AffineGrid grid;
  };
  // Builds the tensors of a plan whose host vectors are filled (xlo/xhi default: the level range lo..hi).
  void finish_plan(Plan& p, const torch::Tensor& x) const;
  void set_range(Plan& p, double lo, double hi) const;  // xlo/xhi = lo*s+off, hi*s+off (float)

  bool per_channel() const { return axis_ >= 0; }
  // The fused CPU loops apply to x: fused() is on and fq::cpu_fusable(x).
  bool fusable(const torch::Tensor& x) const { return fused_ && fq::cpu_fusable(x); }
  // The fused CUDA kernels apply to x: fused() is on and cudak::usable(x).
  bool cuda_fusable(const torch::Tensor& x) const { return fused_ && cudak::usable(x); }
  int64_t channels_of(const torch::Tensor& x) const { return num_channels(x.sizes()); }
  int64_t count_per_channel(const torch::Tensor& x) const { return x.numel() / std::max<int64_t>(1, channels_of(x)); }

  // Detached statistics ([] or [C] on x's device); NaN/inf -> std::domain_error via check_finite.
  torch::Tensor stat_max_abs(const torch::Tensor& x) const;
  std::pair<torch::Tensor, torch::Tensor> stat_min_max(const torch::Tensor& x) const;
  torch::Tensor stat_mean_abs(const torch::Tensor& x) const;
  std::pair<torch::Tensor, torch::Tensor> stat_std_mean(const torch::Tensor& x) const;  // unbiased when n > 1

  // Activation role: adds the running buffers `names` (Quantizer::add_running, in this order); weights: none.
  void add_activation_running(std::initializer_list<const char*> names) {
    if (role_ == Role::Activation)
      for (const char* n : names) add_running(n);
  }
  // Activation role: EMA through Quantizer::running (buffer resized when the statistic's shape changes,
  // e.g. per-channel activations); weight role: the batch value.
  torch::Tensor track(const std::string& name, const torch::Tensor& batch);

  // Fake quantisation with the backward rule. qf: per-channel level functor for the fused path (see
  // fq::map_fq); qc: composite qn(x) from tensor ops (x detached), identical arithmetic.
  template <class QF, class QC>
  torch::Tensor fake_quant(const torch::Tensor& x, const Plan& p, const QF& qf, const QC& qc);
  // qn(x) by the same path fake_quant would take.
  template <class QF, class QC>
  torch::Tensor qn_of(const torch::Tensor& x, const QF& qf, const QC& qc) const;
  // Encoded from qn on the affine grid qn = code + grid_base.
  Encoded encode_grid(const torch::Tensor& qn, const Plan& p, int code_bits, double grid_base) const;
  // Sorted levels of the affine encoding of x restricted to qn in [qlo, qhi] (schemes whose codes do not use
  // the whole 2^code_bits grid: symmetric uniform, twn).
  torch::Tensor grid_levels(const torch::Tensor& x, int64_t channel, double qlo, double qhi);
  // Encoded of an empty tensor (numel 0) with the aux sizes storage() counts.
  Encoded encode_empty(const torch::Tensor& x, int code_bits, double grid_base, bool offset) const;

  // Composite rule (ste() in input units with an inclusive clip).
  torch::Tensor composite_ste(const torch::Tensor& x, const torch::Tensor& val, const Plan& p) const;

  // Puts the module in eval mode for its lifetime (encode() reproduces the eval-mode forward).
  struct EvalScope {
    explicit EvalScope(torch::nn::Module& m) : m_(m), was_(m.is_training()) { m_.eval(); }
    ~EvalScope() { m_.train(was_); }
    torch::nn::Module& m_;
    bool was_;
  };
};

template <class QF, class QC>
torch::Tensor SchemeQuantizer::fake_quant(const torch::Tensor& x, const Plan& p, const QF& qf, const QC& qc) {
  const bool need_grad = x.requires_grad() && torch::GradMode::is_enabled();
  const bool pwl_mix = backward_ != Backward::STE && grad_ratio_ > 0 && is_training();
  if (fusable(x) && !pwl_mix) {
    auto compute = [&]() -> fq::ValueAndMask {
      const auto L = fq::layout_of(x.sizes(), axis_);
      const auto xd = x.detach();
      auto out = torch::empty_like(xd, at::MemoryFormat::Contiguous);
      torch::Tensor mask;
      if (need_grad && backward_ == Backward::PWL_C) mask = torch::empty(xd.sizes(), xd.options().dtype(torch::kBool));
      fq::map_fq(L, xd.data_ptr<float>(), out.data_ptr<float>(), mask.defined() ? mask.data_ptr<bool>() : nullptr, qf,
                 p.s.data(), p.off.empty() ? nullptr : p.off.data(), p.xlo.data(), p.xhi.data());
      if (!p.off.empty() && !fq::kFuseOffset) out.add_(bcast(p.off_t, out));
      return {out, mask};
    };
    if (!need_grad) return compute().first;
    return fq::straight_through(x, compute);
  }
  if (!pwl_mix && p.grid.valid() && cuda_fusable(x)) {  // fused CUDA kernel: same arithmetic as below
    const bool want_mask = need_grad && backward_ == Backward::PWL_C;
    auto compute = [&]() -> fq::ValueAndMask {
      return cudak::affine(x.detach().contiguous(), axis_, p.grid, p.s_t, p.off_t, p.xlo_t, p.xhi_t, want_mask);
    };
    if (!need_grad) return compute().first;
    return fq::straight_through(x, compute);
  }
  torch::Tensor val;
  {
    torch::NoGradGuard ng;
    val = qc(x.detach()) * bcast(p.s_t, x);
    if (p.off_t.defined()) val = val + bcast(p.off_t, x);
  }
  if (!need_grad) return val;
  return composite_ste(x, val, p);
}

template <class QF, class QC>
torch::Tensor SchemeQuantizer::qn_of(const torch::Tensor& x, const QF& qf, const QC& qc) const {
  torch::NoGradGuard ng;
  if (fusable(x)) {
    auto qn = torch::empty_like(x, at::MemoryFormat::Contiguous);
    fq::map_qn(fq::layout_of(x.sizes(), axis_), x.data_ptr<float>(), qn.data_ptr<float>(), qf);
    return qn;
  }
  return qc(x.detach());
}

// Schemes on VecQ's 2^b half-integer grid with per-channel step a (VecQ, ClipQ): they differ only in how
// plan() derives a and the output scale; quantize/encode/storage are shared here.
class HalfGridQuantizer : public SchemeQuantizer {
 public:
  using SchemeQuantizer::SchemeQuantizer;

  torch::Tensor quantize_nonempty(const torch::Tensor& x, int bits) override {
    std::vector<float> a;
    torch::Tensor a_t;
    Plan p = plan(x, bits, a, a_t);
    fq::HalfGrid g(a.data(), nullptr, bits);
    p.grid.mode = 0;
    p.grid.a = a_t;
    p.grid.shift = -0.5f;
    p.grid.lo = g.lo;
    p.grid.hi = g.hi;
    p.grid.post = 0.5f;
    return fake_quant(x, p, g, [&](const torch::Tensor& xd) { return g.tensor(xd, bcast(a_t, xd), {}); });
  }

  Encoded encode(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    const int b = bits();
    const double base = -std::ldexp(1.0, b - 1) + 0.5;
    if (x.numel() == 0) return encode_empty(x, b, base, false);
    std::vector<float> a;
    torch::Tensor a_t;
    Plan p = plan(x, b, a, a_t);
    fq::HalfGrid g(a.data(), nullptr, b);
    auto qn = qn_of(x, g, [&](const torch::Tensor& xd) { return g.tensor(xd, bcast(a_t, xd), {}); });
    return encode_grid(qn, p, b, base);
  }

  // b-bit codes + the output scale per channel (storage_vecq, storage_clipq).
  StorageCost storage(at::IntArrayRef shape) const override { return storage_of(spec_, shape, 1); }

 protected:
  // Fills the coding step a (host vector and tensor, per channel) and the plan (output scale, range).
  virtual Plan plan(const torch::Tensor& x, int bits, std::vector<float>& a, torch::Tensor& a_t) = 0;
};

}  // namespace autoqnn::quant
