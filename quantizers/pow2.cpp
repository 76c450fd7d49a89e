// Engine of the power-of-two family: level tables, deterministic statistics, the fused CPU kernel, the
// composite tensor path and the autograd node. See pow2.h.
#include "quantizers/cuda_dispatch.h"
#include "quantizers/fq_common.h"
#ifdef AUTOQNN_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "quantizers/cuda/kernels.h"
#endif
#include "quantizers/pow2.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <type_traits>

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

namespace {
constexpr int kLutShift = 15;  // 23 - 8 mantissa bits per bucket

uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float ffrom(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void build_lut(LevelTable& t, const std::vector<float>& b) {
  const auto& lv = t.lv;
  const int L = static_cast<int>(lv.size());
  bool sym = true;
  for (int i = 0; i < L; ++i) sym &= lv[i] == -lv[L - 1 - i];
  int first;  // index of the smallest magnitude in the signed table
  if (sym && L % 2 == 1) t.kind = LevelTable::kSignedZero, first = L / 2;
  else if (sym && L % 2 == 0 && L >= 2 && lv[L / 2] > 0) t.kind = LevelTable::kSignedNoZero, first = L / 2;
  else if (lv[0] >= 0) t.kind = LevelTable::kUnsigned, first = 0;
  else return;
  t.n_mag = L - first;
  std::vector<float> mb(b.begin() + first, b.end());  // positive-side boundaries (never nudged)
  for (float v : mb)
    if (!(v > 0)) return;
  if (mb.empty()) return;
  const int64_t kmin = fbits(mb.front()) >> kLutShift, kmax = fbits(mb.back()) >> kLutShift;
  const int64_t size = kmax - kmin + 1;
  if (size > 65536) return;
  std::vector<uint16_t> lut(size + 2);
  lut[0] = 0;
  lut[size + 1] = static_cast<uint16_t>(mb.size());
  size_t k = 0;
  for (int64_t key = kmin; key <= kmax; ++key) {
    const float start = ffrom(static_cast<uint32_t>(key << kLutShift));
    const float end = ffrom(static_cast<uint32_t>((key + 1) << kLutShift));
    while (k < mb.size() && mb[k] < start) ++k;
    size_t k2 = k;
    while (k2 < mb.size() && mb[k2] < end) ++k2;
    if (k2 - k > 1) return;  // two boundaries in one bucket: keep the binary search
    lut[key - kmin + 1] = static_cast<uint16_t>(k);
  }
  mb.push_back(std::numeric_limits<float>::infinity());
  t.mb = std::move(mb);
  t.lut = std::move(lut);
  t.kmin = kmin;
}
}  // namespace

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
  build_lut(t, b);
  t.levels = torch::tensor(t.lv, torch::kFloat32);
  t.bounds = b.empty() ? torch::zeros({0}, torch::kFloat32) : torch::tensor(b, torch::kFloat32);
  t.lo = lv.front();
  t.hi = lv.back();
  return t;
}

// ---------------------------------------------------------------- the fused kernel
namespace {
// [outer, C, inner] around the channel axis: the one definition both families use (fq_common).
using fq::Layout;
using fq::layout_of;

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
// Encoded::dequantize's two); there the offset is added by a separate tensor op (fq_common.h).
using fq::kFuseOffset;

struct KernelOut {
  float* out = nullptr;
  int64_t* codes = nullptr;
  bool* mask = nullptr;  // mlo <= t <= mhi
  float* da = nullptr;   // d out / d alpha per element
};

// Returns false when a non-finite input was seen. Blocks of 256: the normalisation runs as separate
// vectorisable loops, then the level lookup (magnitude LUT, else branchless binary search) per element.
bool run_kernel(const float* x, const Layout& L, const Plan& p, float mlo, float mhi, KernelOut o) {
  const int64_t N = L.outer * L.C * L.inner;
  std::atomic<bool> bad{false};
  const bool has_sub = !p.sub.empty(), has_div = !p.div.empty(), has_alpha = p.alpha.defined();
  const bool has_off = !p.off.empty() && kFuseOffset;
  const LevelTable& T = p.table;
  const float* pb = T.pb.data();
  const float* lv = T.lv.data();
  const int P = T.P;
  const bool use_lut = !p.half_grid && !T.lut.empty();
  const uint16_t* lut = T.lut.data();
  const float* mbp = T.mb.data();
  const int64_t lut_hi = static_cast<int64_t>(T.lut.size()) - 1, kmin = T.kmin;
  const int nm = T.n_mag;
  const auto kind = T.kind;
  // arithmetic formats
  const int fmt_m = p.fmt_m, fmt_emin = p.fmt_emin;
  const uint32_t f_half = (1u << (22 - fmt_m)) - 1u, f_mask = ~((1u << (23 - fmt_m)) - 1u);
  const uint32_t f_mmask = (1u << fmt_m) - 1u;
  const int f_one = 1 << fmt_m;
  const float f_sub = std::ldexp(1.f, fmt_m - fmt_emin), f_u = std::ldexp(1.f, fmt_emin - fmt_m);
  const float f_rcap = static_cast<float>(f_one);
  const uint32_t f_maxb = fbits(static_cast<float>(T.hi)), f_eminb = fbits(std::ldexp(1.f, fmt_emin));
  const uint32_t sqrt2_mant = fbits(static_cast<float>(std::sqrt(2.0))) & 0x7fffffu;
  int pow_emax = 0;
  if (p.format == Plan::kPow2) pow_emax = static_cast<int>(std::lround(std::log2(T.hi)));
  TORCH_CHECK(p.format == Plan::kTable || (T.kind == (p.format == Plan::kFloat ? LevelTable::kSignedZero : LevelTable::kSignedNoZero)),
              "pow2: arithmetic format needs a symmetric table");
  constexpr int B = 256;
  at::parallel_for(0, N, 16384, [&](int64_t b, int64_t e) {
    uint32_t nonfinite = 0;
    float t[B], xn_buf[B], qb[B];
    int cb[B];
    int64_t i = b;
    while (i < e) {
      const int64_t blk = i / L.inner;
      const int64_t c = blk % L.C;
      const int64_t stop = std::min(e, (blk + 1) * L.inner);
      const float sb = has_sub ? p.sub[c] : 0.f, dv = has_div ? p.div[c] : 1.f, al = p.alpha_v;
      const float sc = p.scale[c], of = has_off ? p.off[c] : 0.f;
      const float df = p.dfac.empty() ? 1.f : p.dfac[c];
      const float clo = p.clo, chi = p.chi, glo = p.glo, ghh = p.ghi + 0.5f;
      const int iglo = static_cast<int>(p.glo);
      for (int n = 0; i < stop; i += n) {
        n = static_cast<int>(std::min<int64_t>(B, stop - i));
        const float* xi = x + i;
        for (int j = 0; j < n; ++j) nonfinite |= (fbits(xi[j]) & 0x7f800000u) == 0x7f800000u;  // NaN / inf
        // the same IEEE operations as the composite path, in its order (explicit variants: vectorised)
        if (!has_sub && has_div && !has_alpha) {
          for (int j = 0; j < n; ++j) t[j] = xi[j] / dv;
        } else if (has_sub && has_div && !has_alpha) {
          for (int j = 0; j < n; ++j) t[j] = (xi[j] - sb) / dv;
        } else if (has_sub && has_div && has_alpha) {
          for (int j = 0; j < n; ++j) t[j] = ((xi[j] - sb) / dv) / al;
        } else if (!has_sub && !has_div && has_alpha) {
          for (int j = 0; j < n; ++j) t[j] = xi[j] / al;
        } else {
          for (int j = 0; j < n; ++j) {
            float v = xi[j];
            if (has_sub) v = v - sb;
            if (has_div) v = v / dv;
            if (has_alpha) v = v / al;
            t[j] = v;
          }
        }
        const float* xn = t;
        if (p.clamp) {
          for (int j = 0; j < n; ++j) {  // = clamp (NaN stays NaN)
            float v = t[j];
            v = v < clo ? clo : v;
            xn_buf[j] = v > chi ? chi : v;
          }
          xn = xn_buf;
        }
        // level lookup -> qb (normalised level), cb (code); branch-free loops
        if (p.half_grid) {
          for (int j = 0; j < n; ++j) {
            float v = xn[j];
            v = v < glo ? glo : v;
            v = v > ghh ? ghh : v;  // floor(v) now in [glo, ghi]; NaN: garbage code, reported below
            const int iv = static_cast<int>(v);
            const int fl = iv - (v < static_cast<float>(iv) ? 1 : 0);
            cb[j] = fl - iglo;
            qb[j] = static_cast<float>(fl) + 0.5f;
          }
        } else if (p.format == Plan::kFloat) {
          for (int j = 0; j < n; ++j) {  // integer masks instead of branches (random signs / regimes)
            const uint32_t ab = fbits(xn[j]) & 0x7fffffffu;
            uint32_t qn_n = (ab + f_half) & f_mask;  // round to M mantissa bits, ties toward zero
            qn_n = qn_n > f_maxb ? f_maxb : qn_n;   // non-negative floats order like their bits
            float r = ffrom(ab) * f_sub;             // uniform part below 2^emin (exact scaling)
            r = r > f_rcap ? f_rcap : r;
            const int ir = static_cast<int>(r);
            const int k = ir + static_cast<int>(r - static_cast<float>(ir) > 0.5f);
            const uint32_t subm = 0u - static_cast<uint32_t>(ab < f_eminb);
            const uint32_t qbits = (fbits(static_cast<float>(k) * f_u) & subm) | (qn_n & ~subm);
            // * f_one, not << fmt_m: the exponent offset is negative in the subnormal lanes (masked below),
            // and a left shift of a negative int is undefined before C++20 (UBSan)
            const int mi_n = f_one + (static_cast<int>(qbits >> 23) - 127 - fmt_emin) * f_one +
                             static_cast<int>((qbits >> (23 - fmt_m)) & f_mmask);
            const int mi = static_cast<int>((static_cast<uint32_t>(k) & subm) | (static_cast<uint32_t>(mi_n) & ~subm));
            const uint32_t negm = 0u - static_cast<uint32_t>(xn[j] < 0.f);
            cb[j] = (nm - 1) + mi - static_cast<int>(static_cast<uint32_t>(2 * mi) & negm);
            qb[j] = ffrom(qbits | (0x80000000u & negm & (0u - static_cast<uint32_t>(qbits != 0))));
          }
        } else if (p.format == Plan::kPow2) {
          for (int j = 0; j < n; ++j) {
            const uint32_t ab = fbits(xn[j]) & 0x7fffffffu;
            int e = static_cast<int>(ab >> 23) - 127 + ((ab & 0x7fffffu) > sqrt2_mant ? 1 : 0);
            e = ab < 0x3f800000u ? 0 : e;  // |x| < 1 -> level 1
            e = e > pow_emax ? pow_emax : e;
            const int neg = xn[j] < 0.f ? 1 : 0;
            cb[j] = nm + e - neg * (2 * e + 1);
            qb[j] = ffrom(static_cast<uint32_t>(e + 127) << 23 | (neg ? 0x80000000u : 0u));
          }
        } else if (use_lut) {
          auto lut_loop = [&](auto kind_c) {
            constexpr int kd = decltype(kind_c)::value;
            for (int j = 0; j < n; ++j) {
              const uint32_t ab = fbits(xn[j]) & 0x7fffffffu;
              int64_t kk = static_cast<int64_t>(ab >> kLutShift) - kmin + 1;
              kk = kk < 0 ? 0 : kk;
              kk = kk > lut_hi ? lut_hi : kk;
              const int k0 = lut[kk];
              const int mi = k0 + (mbp[k0] < ffrom(ab) ? 1 : 0);
              const int neg = xn[j] < 0.f ? 1 : 0;  // arithmetic select: signs are unpredictable
              int code;
              if (kd == LevelTable::kSignedZero) code = (nm - 1) + mi - 2 * neg * mi;
              else if (kd == LevelTable::kSignedNoZero) code = nm + mi - neg * (2 * mi + 1);
              else code = mi;
              cb[j] = code;
              qb[j] = lv[code];
            }
          };
          if (kind == LevelTable::kSignedZero) lut_loop(std::integral_constant<int, LevelTable::kSignedZero>());
          else if (kind == LevelTable::kSignedNoZero) lut_loop(std::integral_constant<int, LevelTable::kSignedNoZero>());
          else lut_loop(std::integral_constant<int, LevelTable::kUnsigned>());
        } else {
          for (int j = 0; j < n; ++j) {
            const float v = xn[j];
            int k = 0;
            for (int step = P >> 1; step > 0; step >>= 1) k += (pb[k + step - 1] < v) ? step : 0;
            cb[j] = k;
            qb[j] = lv[k];
          }
        }
        if (o.out) {
          float* out = o.out + i;
          if (has_off)
            for (int j = 0; j < n; ++j) out[j] = qb[j] * sc + of;
          else
            for (int j = 0; j < n; ++j) out[j] = qb[j] * sc;
        }
        if (o.codes)
          for (int j = 0; j < n; ++j) o.codes[i + j] = cb[j];
        if (o.mask)
          for (int j = 0; j < n; ++j) o.mask[i + j] = (t[j] >= mlo) & (t[j] <= mhi);
        if (o.da)
          for (int j = 0; j < n; ++j) o.da[i + j] = df * ((t[j] >= clo && t[j] <= chi) ? qb[j] - xn[j] : qb[j]);
      }
    }
    if (nonfinite) bad = true;
  });
  return !bad;
}

#ifdef AUTOQNN_WITH_CUDA_KERNELS
// run_kernel on the GPU (cuda/fake_quant.cu, table lookup by binary search: the same level as the CPU's
// LUT / arithmetic formats, which are exact shortcuts of that search). The plan's small host arrays travel
// to the device in one copy. Returns false when the input held NaN / inf (checked only where no statistic
// has read x, as the composite path does).
bool run_kernel_cuda(const torch::Tensor& xc, const Layout& L, const Plan& p, float mlo, float mhi, KernelOut o) {
  const int64_t C = p.C;
  const LevelTable& T = p.table;
  const int P = p.half_grid ? 1 : T.P;
  std::vector<float> h;
  h.reserve(static_cast<size_t>(5 * C + 2 * P + 1));
  auto put = [&](const std::vector<float>& v, bool use) -> int64_t {
    if (!use) return -1;
    const int64_t at = static_cast<int64_t>(h.size());
    for (int64_t c = 0; c < C; ++c) h.push_back(v.size() == 1 ? v[0] : v[c]);
    return at;
  };
  const bool has_off = !p.off.empty() && kFuseOffset;
  const int64_t o_sub = put(p.sub, !p.sub.empty()), o_div = put(p.div, !p.div.empty());
  const int64_t o_scale = put(p.scale, true), o_off = put(p.off, has_off);
  const int64_t o_dfac = put(p.dfac, !p.dfac.empty());
  const int64_t o_lv = static_cast<int64_t>(h.size());
  if (!p.half_grid) {
    for (int k = 0; k < P; ++k) h.push_back(T.lv[std::min<size_t>(k, T.lv.size() - 1)]);
    for (int k = 0; k < P - 1; ++k) h.push_back(k < static_cast<int>(T.pb.size()) ? T.pb[k] : std::numeric_limits<float>::infinity());
  }
  h.push_back(0.f);  // never empty
  auto dev = torch::tensor(h, torch::kFloat32).to(xc.device());
  const float* base = dev.data_ptr<float>();
  auto at_ = [&](int64_t off) { return off < 0 ? nullptr : base + off; };
  torch::Tensor flag;
  if (p.check_input) flag = torch::zeros({1}, xc.options().dtype(torch::kInt32));
  c10::cuda::CUDAGuard guard(xc.device());
  cuda::TableArgs a;
  a.x = xc.data_ptr<float>();
  a.out = o.out;
  a.mask = o.mask;
  a.da = o.da;
  a.codes = o.codes;
  a.shape = {L.outer, L.C, L.inner};
  a.sub = at_(o_sub);
  a.div = at_(o_div);
  a.scale = at_(o_scale);
  a.off = at_(o_off);
  a.dfac = at_(o_dfac);
  a.has_alpha = p.alpha.defined();
  a.alpha = p.alpha_v;
  a.clamp = p.clamp;
  a.clo = p.clo;
  a.chi = p.chi;
  a.half_grid = p.half_grid;
  a.glo = p.glo;
  a.ghi = p.ghi;
  a.levels = p.half_grid ? nullptr : base + o_lv;
  a.bounds = p.half_grid ? nullptr : base + o_lv + P;
  a.P = P;
  a.mlo = mlo;
  a.mhi = mhi;
  a.nonfinite = flag.defined() ? flag.data_ptr<int>() : nullptr;
  a.stream = c10::cuda::getCurrentCUDAStream().stream();
  const int err = cuda::table_fake_quant(a);
  if (err != 0) throw std::runtime_error("CUDA kernel table_fake_quant failed: error " + std::to_string(err));
  return !flag.defined() || flag.item<int>() == 0;
}
#endif

// Runs the fused kernel on x's device.
bool run_fused(const torch::Tensor& xc, const Layout& L, const Plan& p, float mlo, float mhi, KernelOut o) {
#ifdef AUTOQNN_WITH_CUDA_KERNELS
  if (xc.is_cuda()) return run_kernel_cuda(xc, L, p, mlo, mhi, o);
#endif
  return run_kernel(xc.data_ptr<float>(), L, p, mlo, mhi, o);
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

// ---------------------------------------------------------------- Pow2Quantizer
bool Pow2Quantizer::use_fused(const torch::Tensor& x) const {
  const bool pwl_mix = backward_ != Backward::STE && grad_ratio_ > 0 && is_training();
  const bool dev_ok = x.device().is_cpu() || (x.is_cuda() && cudak::usable(x));
  return fused_ && !pwl_mix && dev_ok && x.scalar_type() == torch::kFloat32 && x.numel() > 0 &&
         x.layout() == torch::kStrided;
}

void Pow2Quantizer::std_mean(const torch::Tensor& x, std::vector<double>* sd, std::vector<double>* mean) const {
  const int64_t C = channels(x);
  sd->assign(C, 0.0);
  mean->assign(C, 0.0);
  if (x.numel() == 0) return;
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat32) {
    // One pass, shifted by the channel's first element K: S1 = sum(v - K), S2 = sum((v - K)^2); float lanes
    // by position inside blocks of 1024, double across blocks, fixed chunks -> deterministic (independent of
    // the thread count) and identical for a channel and the same values quantized per tensor; a constant
    // channel gives exactly mean = K, std = 0.
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
        const float kc = static_cast<float>(K[c]);
        double s1 = 0, s2 = 0;
        const int64_t p_end = std::min(n, (k + 1) * kChunk);
        for (int64_t q0 = k * kChunk; q0 < p_end; q0 += 1024) {  // blocks of 1024 positions, 8 float lanes
          float l1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, l2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          channel_runs(px, L, c, q0, std::min(p_end, q0 + 1024), [&](const float* ptr, int64_t len, int64_t pos) {
            int64_t j = 0;
            for (; j < len && ((pos + j) & 7); ++j) {
              const float d = ptr[j] - kc;
              l1[(pos + j) & 7] += d;
              l2[(pos + j) & 7] += d * d;
            }
            for (; j + 8 <= len; j += 8)
              for (int l = 0; l < 8; ++l) {
                const float d = ptr[j + l] - kc;
                l1[l] += d;
                l2[l] += d * d;
              }
            for (; j < len; ++j) {
              const float d = ptr[j] - kc;
              l1[(pos + j) & 7] += d;
              l2[(pos + j) & 7] += d * d;
            }
          });
          for (int l = 0; l < 8; ++l) {
            s1 += l1[l];
            s2 += l2[l];
          }
        }
        part[task * 2] = s1;
        part[task * 2 + 1] = s2;
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
        float lm[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // max is exact: any lane order gives the same result
        uint32_t nf = 0;
        channel_runs(px, L, c, k * kChunk, std::min(n, (k + 1) * kChunk), [&](const float* ptr, int64_t len, int64_t) {
          int64_t j = 0;
          for (; j + 8 <= len; j += 8)
            for (int l = 0; l < 8; ++l) {
              const uint32_t u = fbits(ptr[j + l]) & 0x7fffffffu;
              nf |= static_cast<uint32_t>(u >= 0x7f800000u);
              const float a = ffrom(u);
              lm[l] = a > lm[l] ? a : lm[l];
            }
          for (; j < len; ++j) {
            const uint32_t u = fbits(ptr[j]) & 0x7fffffffu;
            nf |= static_cast<uint32_t>(u >= 0x7f800000u);
            const float a = ffrom(u);
            lm[0] = a > lm[0] ? a : lm[0];
          }
        });
        float m = 0.f;
        for (int l = 0; l < 8; ++l) m = lm[l] > m ? lm[l] : m;
        part[task] = nf ? std::numeric_limits<float>::quiet_NaN() : m;
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
      if (!run_fused(xc, L, p, mlo, mhi, o))
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
    if (!run_fused(xc, layout_of(xc.sizes(), axis_), p, 0.f, 0.f, o))
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
