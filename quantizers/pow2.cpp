// Engine of the power-of-two family: level tables, deterministic statistics, the fused CPU kernel, the
// composite tensor path and the autograd node. See pow2.h.
#include "quantizers/pow2.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <stdexcept>

namespace autoqnn::quant::pow2 {

std::vector<double> signed_levels(const std::vector<double>& mags) {
  std::vector<double> out;
  for (auto it = mags.rbegin(); it != mags.rend(); ++it)
    if (*it != 0) out.push_back(-*it);
  for (double m : mags) out.push_back(m);
  return out;
}

bool parse_bool_param(const QuantSpec& s, const std::string& key) {
  if (!s.has(key)) return false;
  const std::string v = s.get(key, "");
  if (v.empty() || v == "1" || v == "true") return true;
  if (v == "0" || v == "false") return false;
  throw std::invalid_argument("quantizer '" + s.to_string() + "': " + key + " takes 0/1 (or a bare flag), got '" +
                              v + "'");
}

LevelTable make_table(const std::vector<double>& lv, bool geometric) {
  TORCH_CHECK(!lv.empty(), "empty level table");
  LevelTable t;
  std::vector<float> b;
  for (size_t i = 0; i + 1 < lv.size(); ++i) {
    double m;
    if (geometric && lv[i] > 0 && lv[i + 1] > 0) m = std::sqrt(lv[i] * lv[i + 1]);
    else if (geometric && lv[i] < 0 && lv[i + 1] < 0) m = -std::sqrt(lv[i] * lv[i + 1]);
    else if (geometric) m = 0;
    else m = 0.5 * (lv[i] + lv[i + 1]);
    float f = static_cast<float>(m);
    if (f <= 0) f = std::nextafter(f, -std::numeric_limits<float>::infinity());  // ties toward zero
    b.push_back(f);
  }
  for (double v : lv) t.lv.push_back(static_cast<float>(v));
  t.P = 1;
  while (t.P < static_cast<int>(lv.size())) t.P *= 2;
  t.pb = b;
  t.pb.resize(t.P - 1, std::numeric_limits<float>::infinity());
  t.levels = torch::tensor(t.lv, torch::kFloat32);
  t.bounds = b.empty() ? torch::zeros({0}, torch::kFloat32) : torch::tensor(b, torch::kFloat32);
  t.lo = lv.front();
  t.hi = lv.back();
  return t;
}

// ---------------------------------------------------------------- fused kernels switch
namespace {
std::atomic<bool> g_fused{true};

struct Layout {
  int64_t outer = 1, C = 1, inner = 1;
  int64_t per_channel() const { return outer * inner; }
};

Layout layout_of(at::IntArrayRef shape, int64_t axis) {
  Layout L;
  const int64_t n = c10::multiply_integers(shape);
  if (axis < 0) {
    L.inner = n;
    return L;
  }
  L.C = shape[axis];
  for (int64_t d = 0; d < axis; ++d) L.outer *= shape[d];
  for (int64_t d = axis + 1; d < static_cast<int64_t>(shape.size()); ++d) L.inner *= shape[d];
  return L;
}

// f(ptr, len, pos) over the contiguous memory runs of channel c's positions [p0, p1) (position = index in
// the channel's own sequence, outer-major).
template <class F>
void channel_runs(const float* x, const Layout& L, int64_t c, int64_t p0, int64_t p1, F&& f) {
  int64_t p = p0;
  while (p < p1) {
    const int64_t o = p / L.inner, j = p % L.inner;
    const int64_t len = std::min(L.inner - j, p1 - p);
    f(x + (o * L.C + c) * L.inner + j, len, p);
    p += len;
  }
}

constexpr int64_t kChunk = 1 << 16;  // reduction chunk (positions); results do not depend on thread count

// Where the target has fast FMA a compiler may contract q * s + off into one fma (one rounding instead of
// Encoded::dequantize's two); there the offset is added by a separate tensor op.
#if defined(__FP_FAST_FMAF) || defined(__FP_FAST_FMA)
constexpr bool kFuseOffset = false;
#else
constexpr bool kFuseOffset = true;
#endif

struct KernelOut {
  float* out = nullptr;
  int64_t* codes = nullptr;
  bool* mask = nullptr;  // mlo <= t <= mhi
  float* da = nullptr;   // d out / d alpha per element
};

// Returns false when a non-finite input was seen.
bool run_kernel(const float* x, const Layout& L, const Plan& p, float mlo, float mhi, KernelOut o) {
  const int64_t N = L.outer * L.C * L.inner;
  std::atomic<bool> bad{false};
  const bool has_sub = !p.sub.empty(), has_div = !p.div.empty(), has_alpha = p.alpha.defined();
  const bool has_off = !p.off.empty() && kFuseOffset;
  const float* pb = p.table.pb.data();
  const float* lv = p.table.lv.data();
  const int P = p.table.P;
  at::parallel_for(0, N, 16384, [&](int64_t b, int64_t e) {
    bool local_bad = false;
    int64_t i = b;
    while (i < e) {
      const int64_t blk = i / L.inner;
      const int64_t c = blk % L.C;
      const int64_t stop = std::min(e, (blk + 1) * L.inner);
      const float sb = has_sub ? p.sub[c] : 0.f, dv = has_div ? p.div[c] : 1.f, al = p.alpha_v;
      const float sc = p.scale[c], of = has_off ? p.off[c] : 0.f;
      const float df = p.dfac.empty() ? 1.f : p.dfac[c];
      const float clo = p.clo, chi = p.chi, glo = p.glo, ghi = p.ghi;
      for (; i < stop; ++i) {
        const float v = x[i];
        local_bad |= !(v - v == 0.f);  // NaN or inf
        float t = v;
        if (has_sub) t = t - sb;
        if (has_div) t = t / dv;
        if (has_alpha) t = t / al;
        float xn = t;
        if (p.clamp) xn = std::min(std::max(t, clo), chi);
        float qn;
        int64_t code;
        if (p.half_grid) {
          float f = std::floor(xn);
          f = std::min(std::max(f, glo), ghi);
          qn = f + 0.5f;
          code = static_cast<int64_t>(f - glo);
        } else {
          int k = 0;
          for (int step = P >> 1; step > 0; step >>= 1) k += (pb[k + step - 1] < xn) ? step : 0;
          code = k;
          qn = lv[k];
        }
        if (o.out) o.out[i] = has_off ? qn * sc + of : qn * sc;
        if (o.codes) o.codes[i] = code;
        if (o.mask) o.mask[i] = (t >= mlo) & (t <= mhi);
        if (o.da) o.da[i] = df * ((t >= clo && t <= chi) ? qn - xn : qn);
      }
    }
    if (local_bad) bad = true;
  });
  return !bad;
}

// Autograd node of the fused path: forward value = compute().out exactly; backward: x gets g (* mask)
// (* gfac), alpha gets sum(g * da).
struct FusedResult {
  torch::Tensor out, mask, gfac, da;
};
using FusedCompute = std::function<FusedResult()>;

struct FusedFn : public torch::autograd::Function<FusedFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               c10::optional<torch::Tensor> alpha, const FusedCompute* fn) {
    FusedResult r = (*fn)();
    ctx->save_for_backward({r.mask, r.gfac, r.da});
    return r.out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list go) {
    auto s = ctx->get_saved_variables();
    auto g = go[0];
    torch::Tensor gx = g;
    if (s[0].defined()) gx = torch::where(s[0], g, torch::zeros({}, g.options()));
    if (s[1].defined()) gx = gx * s[1];
    torch::Tensor ga;
    if (s[2].defined()) ga = (g * s[2]).sum();
    return {gx, ga, torch::Tensor()};
  }
};

}  // namespace

void set_fused_kernels(bool on) { g_fused = on; }
bool fused_kernels() { return g_fused; }

// ---------------------------------------------------------------- Pow2Quantizer
bool Pow2Quantizer::use_fused(const torch::Tensor& x) const {
  const bool pwl_mix = backward_ != Backward::STE && grad_ratio_ > 0 && is_training();
  return g_fused && !pwl_mix && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.numel() > 0 &&
         x.layout() == torch::kStrided;
}

void Pow2Quantizer::std_mean(const torch::Tensor& x, std::vector<double>* sd, std::vector<double>* mean) const {
  const int64_t C = channels(x);
  sd->assign(C, 0.0);
  mean->assign(C, 0.0);
  if (x.numel() == 0) return;
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat32) {
    // One pass, shifted by the channel's first element K: S1 = sum(v - K), S2 = sum((v - K)^2) in double,
    // 4 lanes by position, fixed chunks -> deterministic and identical for a channel and the same values
    // quantized per tensor; a constant channel gives exactly mean = K, std = 0.
    auto xc = x.detach().contiguous();
    const float* px = xc.data_ptr<float>();
    const Layout L = layout_of(xc.sizes(), axis_);
    const int64_t n = L.per_channel(), nch = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(C * nch * 2), 0.0);
    std::vector<double> K(C);
    for (int64_t c = 0; c < C; ++c) K[c] = px[c * L.inner];
    at::parallel_for(0, C * nch, 1, [&](int64_t tb, int64_t te) {
      for (int64_t task = tb; task < te; ++task) {
        const int64_t c = task / nch, k = task % nch;
        const double kc = K[c];
        double s1[4] = {0, 0, 0, 0}, s2[4] = {0, 0, 0, 0};
        channel_runs(px, L, c, k * kChunk, std::min(n, (k + 1) * kChunk), [&](const float* ptr, int64_t len, int64_t pos) {
          int64_t j = 0;
          for (; j < len && ((pos + j) & 3); ++j) {
            const double d = ptr[j] - kc;
            s1[(pos + j) & 3] += d;
            s2[(pos + j) & 3] += d * d;
          }
          for (; j + 4 <= len; j += 4)
            for (int l = 0; l < 4; ++l) {
              const double d = ptr[j + l] - kc;
              s1[l] += d;
              s2[l] += d * d;
            }
          for (; j < len; ++j) {
            const double d = ptr[j] - kc;
            s1[(pos + j) & 3] += d;
            s2[(pos + j) & 3] += d * d;
          }
        });
        part[task * 2] = (s1[0] + s1[1]) + (s1[2] + s1[3]);
        part[task * 2 + 1] = (s2[0] + s2[1]) + (s2[2] + s2[3]);
      }
    });
    for (int64_t c = 0; c < C; ++c) {
      double S1 = 0, S2 = 0;
      for (int64_t k = 0; k < nch; ++k) {
        S1 += part[(c * nch + k) * 2];
        S2 += part[(c * nch + k) * 2 + 1];
      }
      (*mean)[c] = K[c] + S1 / n;
      (*sd)[c] = n > 1 ? std::sqrt(std::max(0.0, (S2 - S1 * S1 / n) / (n - 1))) : 0.0;
      if (!std::isfinite(S1) || !std::isfinite(S2)) (*sd)[c] = std::numeric_limits<double>::quiet_NaN();
    }
  } else {
    torch::NoGradGuard ng;
    auto xd = x.detach();
    auto rows = axis_ < 0 ? xd.reshape({1, -1}) : xd.movedim(axis_, 0).reshape({C, -1});
    auto sm = torch::std_mean(rows, at::IntArrayRef{1}, /*unbiased=*/rows.size(1) > 1, /*keepdim=*/false);
    auto s = std::get<0>(sm).to(torch::kCPU, torch::kDouble).contiguous();
    auto m = std::get<1>(sm).to(torch::kCPU, torch::kDouble).contiguous();
    for (int64_t c = 0; c < C; ++c) {
      (*sd)[c] = s.data_ptr<double>()[c];
      (*mean)[c] = m.data_ptr<double>()[c];
    }
  }
  for (int64_t c = 0; c < C; ++c)
    if (!std::isfinite((*sd)[c]) || !std::isfinite((*mean)[c]))
      check_finite(torch::full({}, std::numeric_limits<double>::quiet_NaN()), "std/mean");  // throws
}

std::vector<double> Pow2Quantizer::absmax(const torch::Tensor& x) const {
  const int64_t C = channels(x);
  std::vector<double> out(C, 0.0);
  if (x.numel() == 0) return out;
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat32) {
    auto xc = x.detach().contiguous();
    const float* px = xc.data_ptr<float>();
    const Layout L = layout_of(xc.sizes(), axis_);
    const int64_t n = L.per_channel(), nch = (n + kChunk - 1) / kChunk;
    std::vector<float> part(static_cast<size_t>(C * nch), 0.f);
    at::parallel_for(0, C * nch, 1, [&](int64_t tb, int64_t te) {
      for (int64_t task = tb; task < te; ++task) {
        const int64_t c = task / nch, k = task % nch;
        float m = 0.f;
        bool bad = false;
        channel_runs(px, L, c, k * kChunk, std::min(n, (k + 1) * kChunk), [&](const float* ptr, int64_t len, int64_t) {
          for (int64_t j = 0; j < len; ++j) {
            const float a = std::fabs(ptr[j]);
            bad |= !(a - a == 0.f);
            m = a > m ? a : m;
          }
        });
        part[task] = bad ? std::numeric_limits<float>::quiet_NaN() : m;
      }
    });
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < nch; ++k) {
        const float v = part[c * nch + k];
        if (std::isnan(v)) out[c] = v;
        else if (!std::isnan(out[c])) out[c] = std::max<double>(out[c], v);
      }
  } else {
    torch::NoGradGuard ng;
    auto xd = x.detach();
    auto rows = axis_ < 0 ? xd.reshape({1, -1}) : xd.movedim(axis_, 0).reshape({C, -1});
    auto mm = torch::aminmax(rows, /*dim=*/1, /*keepdim=*/false);
    auto a = torch::max(std::get<0>(mm).neg(), std::get<1>(mm));
    // aminmax may skip NaN on some versions: fold a NaN check into the statistic
    a = a + rows.sum(1) * 0;
    auto h = a.to(torch::kCPU, torch::kDouble).contiguous();
    for (int64_t c = 0; c < C; ++c) out[c] = h.data_ptr<double>()[c];
  }
  for (int64_t c = 0; c < C; ++c)
    if (!std::isfinite(out[c])) check_finite(torch::full({}, std::numeric_limits<double>::quiet_NaN()), "max|x|");
  return out;
}

torch::Tensor Pow2Quantizer::param(const std::vector<float>& v, const torch::Tensor& like) const {
  auto t = torch::tensor(v, torch::kFloat32);
  if (axis_ < 0) t = t.reshape({});
  return like.device().is_cpu() ? t : t.to(like.device());
}

void Pow2Quantizer::resolve_scale(Plan& p) const {
  if (!p.alpha.defined()) return;
  p.scale.resize(p.C);
  for (int64_t c = 0; c < p.C; ++c) p.scale[c] = p.alpha_v * (p.dfac.empty() ? 1.f : p.dfac[c]);
}

torch::Tensor Pow2Quantizer::composite_t(const torch::Tensor& x, const Plan& p) const {
  torch::Tensor t = x;
  if (!p.sub.empty()) t = t - bcast(param(p.sub, x), x);
  if (!p.div.empty()) t = t / bcast(param(p.div, x), x);
  if (p.alpha.defined()) t = t / p.alpha.to(x.device());
  if (p.clamp) t = t.clamp(p.clo, p.chi);
  return t;
}

torch::Tensor Pow2Quantizer::composite_qn(const torch::Tensor& xn, const Plan& p, torch::Tensor* codes) const {
  torch::NoGradGuard ng;
  auto xd = xn.detach();
  if (p.half_grid) {
    auto f = torch::floor(xd).clamp_(p.glo, p.ghi);
    if (codes) *codes = (f - p.glo).to(torch::kLong);
    return f.add_(0.5);
  }
  torch::Tensor k = p.table.bounds.numel() == 0
                        ? torch::zeros(xd.sizes(), xd.options().dtype(torch::kLong))
                        : torch::bucketize(xd, p.table.bounds.to(xd.options()), /*out_int32=*/false, /*right=*/false);
  if (codes) *codes = k;
  return torch::take(p.table.levels.to(xd.options()), k);
}

torch::Tensor Pow2Quantizer::fake_quant(const torch::Tensor& x, const Plan& p) {
  const bool alpha_grad = p.alpha.defined() && p.alpha.requires_grad();
  const bool need_grad = torch::GradMode::is_enabled() && (x.requires_grad() || alpha_grad);
  if (use_fused(x)) {
    const auto xc = x.detach().contiguous();
    const Layout L = layout_of(xc.sizes(), axis_);
    const bool want_mask = need_grad && x.requires_grad() && (p.clamp || backward_ == Backward::PWL_C);
    const float mlo = p.clamp ? p.clo : static_cast<float>(p.lo), mhi = p.clamp ? p.chi : static_cast<float>(p.hi);
    FusedCompute compute = [&]() {
      FusedResult r;
      r.out = torch::empty_like(xc);
      KernelOut o;
      o.out = r.out.data_ptr<float>();
      if (want_mask) {
        r.mask = torch::empty(xc.sizes(), xc.options().dtype(torch::kBool));
        o.mask = r.mask.data_ptr<bool>();
      }
      if (need_grad && alpha_grad) {
        r.da = torch::empty_like(xc);
        o.da = r.da.data_ptr<float>();
      }
      if (!run_kernel(xc.data_ptr<float>(), L, p, mlo, mhi, o))
        check_finite(torch::full({}, std::numeric_limits<double>::quiet_NaN()), "input");  // throws
      if (!p.off.empty() && !kFuseOffset) r.out.add_(bcast(param(p.off, xc), xc));
      if (need_grad && x.requires_grad()) {  // d out / d x = scale / (div * alpha) per channel (1 for most)
        std::vector<float> g(p.C);
        bool ones = true;
        for (int64_t c = 0; c < p.C; ++c) {
          double d = (p.div.empty() ? 1.0 : p.div[c]) * (p.alpha.defined() ? p.alpha_v : 1.0);
          g[c] = static_cast<float>(p.scale[c] / d);
          ones &= g[c] == 1.f;
        }
        if (!ones) r.gfac = bcast(param(g, xc), xc);
      }
      return r;
    };
    if (!need_grad) return compute().out;
    c10::optional<torch::Tensor> a;
    if (p.alpha.defined()) a = p.alpha;
    return FusedFn::apply(x, a, &compute);
  }
  // composite
  if (p.check_input) check_finite(x.detach().sum(), "sum(x)");
  auto xn = composite_t(x, p);
  auto qn = composite_qn(xn, p, nullptr);
  const bool need = xn.requires_grad() || (is_training() && backward_ != Backward::STE && grad_ratio_ > 0);
  auto y = need ? ste(xn, qn, p.lo, p.hi) : qn;
  torch::Tensor scale = p.alpha.defined() ? p.alpha.to(x.device()) * bcast(param(p.dfac.empty() ? std::vector<float>(p.C, 1.f) : p.dfac, x), x)
                                          : bcast(param(p.scale, x), x);
  auto out = y * scale;
  if (!p.off.empty()) out = out + bcast(param(p.off, x), x);
  return out;
}

Encoded Pow2Quantizer::encode_plan(const torch::Tensor& x, const Plan& p, int code_bits) {
  torch::NoGradGuard ng;
  Encoded e;
  e.code_bits = code_bits;
  e.axis = axis_;
  if (use_fused(x)) {
    const auto xc = x.detach().contiguous();
    e.codes = torch::empty(xc.sizes(), xc.options().dtype(torch::kLong));
    KernelOut o;
    o.codes = e.codes.data_ptr<int64_t>();
    if (!run_kernel(xc.data_ptr<float>(), layout_of(xc.sizes(), axis_), p, 0.f, 0.f, o))
      check_finite(torch::full({}, std::numeric_limits<double>::quiet_NaN()), "input");
  } else {
    if (p.check_input) check_finite(x.detach().sum(), "sum(x)");
    composite_qn(composite_t(x.detach(), p), p, &e.codes);
  }
  if (p.half_grid) e.grid_base = p.glo + 0.5;
  else e.table = p.table.levels.to(x.device(), torch::kFloat32);
  e.scale = param(p.scale, x);
  if (!p.off.empty()) e.offset = param(p.off, x);
  return e;
}

}  // namespace autoqnn::quant::pow2
