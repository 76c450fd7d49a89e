#include "quantizers/fq_common.h"

#include <limits>
#include <stdexcept>

namespace autoqnn::quant {
namespace fq {

namespace {
struct StraightThroughFn : public torch::autograd::Function<StraightThroughFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const std::function<ValueAndMask()>* compute) {
    auto vm = (*compute)();
    ctx->saved_data["has_mask"] = vm.second.defined();
    if (vm.second.defined()) ctx->saved_data["mask"] = vm.second;
    return vm.first;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    torch::Tensor gx = g[0];
    if (gx.defined() && ctx->saved_data["has_mask"].toBool())
      gx = masked_grad(gx, ctx->saved_data["mask"].toTensor());
    return {gx, torch::Tensor()};
  }
};
}  // namespace

Layout layout_of(at::IntArrayRef shape, int64_t axis) {
  Layout L;
  int64_t n = 1;
  for (auto s : shape) n *= s;
  if (axis < 0) {
    L.inner = n;
    return L;
  }
  L.C = shape[axis];
  for (int64_t d = 0; d < axis; ++d) L.outer *= shape[d];
  for (int64_t d = axis + 1; d < static_cast<int64_t>(shape.size()); ++d) L.inner *= shape[d];
  return L;
}

bool cpu_fusable(const torch::Tensor& x) {
  return x.defined() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.is_contiguous() &&
         x.numel() > 0 && !x.is_sparse();
}

std::vector<int64_t> reduce_dims(int64_t dim, int64_t axis) {
  std::vector<int64_t> d;
  for (int64_t i = 0; i < dim; ++i)
    if (i != axis) d.push_back(i);
  return d;
}

torch::Tensor masked_grad(const torch::Tensor& g, const torch::Tensor& mask) {
  if (g.device().is_cpu() && g.scalar_type() == torch::kFloat32 && g.is_contiguous() && mask.is_contiguous() &&
      mask.device().is_cpu() && g.sizes() == mask.sizes()) {
    auto out = torch::empty_like(g, at::MemoryFormat::Contiguous);
    const float* gp = g.data_ptr<float>();
    const bool* mp = mask.data_ptr<bool>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, g.numel(), 32768, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float gi = gp[i];  // unconditional load (vectorises)
        op[i] = mp[i] ? gi : 0.f;
      }
    });
    return out;
  }
  return torch::where(mask.to(g.device()), g, torch::zeros({}, g.options()));
}

torch::Tensor straight_through(const torch::Tensor& x, const std::function<ValueAndMask()>& compute) {
  return StraightThroughFn::apply(x, &compute);
}

std::vector<float> to_host(const torch::Tensor& t) {
  auto h = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(h.data_ptr<float>(), h.data_ptr<float>() + h.numel());
}

torch::Tensor from_host(const std::vector<float>& v, bool per_channel, const torch::Tensor& like) {
  auto t = torch::tensor(v, torch::kFloat32);
  if (!per_channel) t = t.reshape({});
  return t.to(like.device());
}

}  // namespace fq

// ---------------------------------------------------------------- SchemeQuantizer
void SchemeQuantizer::set_range(Plan& p, double lo, double hi) const {
  p.xlo.resize(p.C);
  p.xhi.resize(p.C);
  for (int64_t c = 0; c < p.C; ++c) {
    const float o = p.off.empty() ? 0.f : p.off[c];
    // Two roundings, as the level values themselves are computed.
    const float a = static_cast<float>(lo) * p.s[c];
    const float b = static_cast<float>(hi) * p.s[c];
    p.xlo[c] = a + o;
    p.xhi[c] = b + o;
  }
}

void SchemeQuantizer::finish_plan(Plan& p, const torch::Tensor& x) const {
  TORCH_CHECK(static_cast<int64_t>(p.s.size()) == p.C, "plan scale size");
  if (p.xlo.empty()) {
    p.xlo.assign(p.C, -std::numeric_limits<float>::infinity());
    p.xhi.assign(p.C, std::numeric_limits<float>::infinity());
  }
  const bool pc = per_channel();
  p.s_t = fq::from_host(p.s, pc, x);
  p.off_t = p.off.empty() ? torch::Tensor() : fq::from_host(p.off, pc, x);
  p.xlo_t = fq::from_host(p.xlo, pc, x);
  p.xhi_t = fq::from_host(p.xhi, pc, x);
}

torch::Tensor SchemeQuantizer::stat_max_abs(const torch::Tensor& x) const {
  torch::NoGradGuard ng;
  torch::Tensor m;
  if (!per_channel()) {
    auto mm = torch::aminmax(x.detach());
    m = torch::max(std::get<1>(mm), -std::get<0>(mm));
  } else {
    auto d = fq::reduce_dims(x.dim(), axis_);
    m = torch::max(x.detach().amax(d), -x.detach().amin(d));
  }
  check_finite(m, "max|x|");
  return m.to(torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> SchemeQuantizer::stat_min_max(const torch::Tensor& x) const {
  torch::NoGradGuard ng;
  torch::Tensor mn, mx;
  if (!per_channel()) {
    auto mm = torch::aminmax(x.detach());
    mn = std::get<0>(mm);
    mx = std::get<1>(mm);
  } else {
    auto d = fq::reduce_dims(x.dim(), axis_);
    mn = x.detach().amin(d);
    mx = x.detach().amax(d);
  }
  check_finite(mn, "min(x)");
  check_finite(mx, "max(x)");
  return {mn.to(torch::kFloat32), mx.to(torch::kFloat32)};
}

torch::Tensor SchemeQuantizer::stat_mean_abs(const torch::Tensor& x) const {
  torch::NoGradGuard ng;
  torch::Tensor m;
  if (fusable(x)) {  // one vectorised pass (torch's norm(1) is ~4x slower on CPU)
    const auto L = fq::layout_of(x.sizes(), axis_);
    auto s = fq::reduce_runs<1>(x.data_ptr<float>(), L,
                                [](int64_t) { return [](float v, float* t) { t[0] = std::fabs(v); }; });
    const double n = static_cast<double>(count_per_channel(x));
    std::vector<float> h(L.C);
    for (int64_t c = 0; c < L.C; ++c) h[c] = static_cast<float>(s[c] / n);
    m = fq::from_host(h, per_channel(), x);
  } else if (!per_channel()) m = x.detach().norm(1) / static_cast<double>(x.numel());
  else
    m = at::norm(x.detach(), c10::optional<at::Scalar>(1), fq::reduce_dims(x.dim(), axis_), false) /
        static_cast<double>(count_per_channel(x));
  check_finite(m, "mean|x|");
  return m.to(torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> SchemeQuantizer::stat_std_mean(const torch::Tensor& x) const {
  torch::NoGradGuard ng;
  const bool unbiased = count_per_channel(x) > 1;
  if (fusable(x)) {  // two vectorised passes (mean, then centred squares); torch's std_mean is ~30x slower
    const auto L = fq::layout_of(x.sizes(), axis_);
    const float* xp = x.data_ptr<float>();
    auto s1 = fq::reduce_runs<1>(xp, L, [](int64_t) { return [](float v, float* t) { t[0] = v; }; });
    const double n = static_cast<double>(count_per_channel(x));
    std::vector<float> mean(L.C), sd(L.C);
    for (int64_t c = 0; c < L.C; ++c) mean[c] = static_cast<float>(s1[c] / n);
    const float* mp = mean.data();
    auto s2 = fq::reduce_runs<1>(xp, L, [mp](int64_t c) {
      const float m = mp[c];
      return [m](float v, float* t) { t[0] = (v - m) * (v - m); };
    });
    for (int64_t c = 0; c < L.C; ++c) sd[c] = static_cast<float>(std::sqrt(s2[c] / (unbiased ? n - 1 : n)));
    auto sd_t = fq::from_host(sd, per_channel(), x), mean_t = fq::from_host(mean, per_channel(), x);
    check_finite(sd_t, "std(x)");
    check_finite(mean_t, "mean(x)");
    return {sd_t, mean_t};
  }
  std::tuple<torch::Tensor, torch::Tensor> sm;
  if (!per_channel()) sm = torch::std_mean(x.detach(), unbiased);
  else sm = torch::std_mean(x.detach(), fq::reduce_dims(x.dim(), axis_), unbiased, false);
  auto sd = std::get<0>(sm), mean = std::get<1>(sm);
  check_finite(sd, "std(x)");
  check_finite(mean, "mean(x)");
  return {sd.to(torch::kFloat32), mean.to(torch::kFloat32)};
}

torch::Tensor SchemeQuantizer::track(const std::string& name, const torch::Tensor& batch) {
  if (role_ != Role::Activation) return batch;
  auto bufs = named_buffers(/*recurse=*/false);  // a temporary dict: keep it alive while using find()
  auto* buf = bufs.find(name);
  auto* init = bufs.find(name + "_init");
  TORCH_CHECK(buf && init, "quantizer ", spec_.to_string(), ": running buffer '", name, "' missing");
  if (buf->sizes() != batch.sizes()) {
    torch::NoGradGuard ng;
    buf->set_data(torch::zeros(batch.sizes(), batch.options().dtype(buf->dtype())));
    init->fill_(0);
  }
  return running(name, batch);
}

Encoded SchemeQuantizer::encode_grid(const torch::Tensor& qn, const Plan& p, int code_bits, double grid_base) const {
  Encoded e;
  e.codes = (qn - static_cast<float>(grid_base)).to(torch::kInt64);
  e.code_bits = code_bits;
  e.grid_base = grid_base;
  e.scale = p.s_t;
  e.offset = p.off_t;
  e.axis = per_channel() ? axis_ : -1;
  return e;
}

torch::Tensor SchemeQuantizer::grid_levels(const torch::Tensor& x, int64_t channel, double qlo, double qhi) {
  torch::NoGradGuard ng;
  Encoded e = encode(x);
  auto qn = torch::arange(qlo, qhi + 0.5, 1.0, torch::TensorOptions().dtype(torch::kFloat32)).to(x.device());
  auto pick = [&](const torch::Tensor& t) { return t.dim() == 0 ? t : t[channel]; };
  auto v = qn * pick(e.scale);
  if (e.offset.defined()) v = v + pick(e.offset);
  return std::get<0>(torch::_unique(v, /*sorted=*/true));
}

Encoded SchemeQuantizer::encode_empty(const torch::Tensor& x, int code_bits, double grid_base, bool offset) const {
  Encoded e;
  e.codes = torch::zeros(x.sizes(), x.options().dtype(torch::kInt64));
  e.code_bits = code_bits;
  e.grid_base = grid_base;
  const int64_t C = channels_of(x);
  auto opts = x.options().dtype(torch::kFloat32);
  e.scale = per_channel() ? torch::ones({C}, opts) : torch::ones({}, opts);
  if (offset) e.offset = torch::zeros_like(e.scale);
  e.axis = per_channel() ? axis_ : -1;
  return e;
}

torch::Tensor SchemeQuantizer::composite_ste(const torch::Tensor& x, const torch::Tensor& val, const Plan& p) const {
  torch::Tensor xc = x;
  if (backward_ == Backward::PWL_C)
    xc = torch::clamp(x, c10::optional<torch::Tensor>(bcast(p.xlo_t, x).to(x.scalar_type())),
                      c10::optional<torch::Tensor>(bcast(p.xhi_t, x).to(x.scalar_type())));
  torch::Tensor q = val;
  if (backward_ != Backward::STE && grad_ratio_ > 0 && is_training()) q = q + grad_ratio_ * (xc.detach() - q);
  return q + (xc - xc.detach());
}

}  // namespace autoqnn::quant
