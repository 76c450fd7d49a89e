#include "quantizers/quantizer.h"

#include <stdexcept>

#include "quantizers/registry.h"

namespace autoqnn::quant {

const char* role_name(Role r) { return r == Role::Weight ? "weight" : "activation"; }

const char* backward_name(Backward b) {
  switch (b) {
    case Backward::STE: return "ste";
    case Backward::PWL: return "pwl";
    case Backward::PWL_C: return "pwl_c";
  }
  return "?";
}

Backward parse_backward(const std::string& s) {
  if (s == "ste") return Backward::STE;
  if (s == "pwl") return Backward::PWL;
  if (s == "pwl_c") return Backward::PWL_C;
  throw std::invalid_argument("unknown backward rule 'grad=" + s + "' (valid: ste, pwl, pwl_c)");
}

// ---------------------------------------------------------------- Encoded
torch::Tensor Encoded::dequantize() const {
  TORCH_CHECK(codes.defined() && scale.defined(), "Encoded::dequantize: codes/scale missing");
  auto shape_c = [&](const torch::Tensor& t) {
    if (axis < 0 || t.dim() == 0) return t;
    std::vector<int64_t> s(codes.dim(), 1);
    s[axis] = t.numel();
    return t.reshape(s);
  };
  torch::Tensor vals;
  if (table.defined()) {
    if (table.dim() == 1) {
      vals = table.index({codes});
    } else {  // per-channel tables [C, L]: row = channel index along axis
      auto c = codes.movedim(axis, 0);
      auto rows = c.reshape({c.size(0), -1});
      auto g = torch::gather(table, 1, rows);
      vals = g.reshape(c.sizes()).movedim(0, axis);
    }
  } else {
    vals = codes.to(torch::kFloat32) + static_cast<float>(grid_base);
  }
  auto out = vals * shape_c(scale);
  if (offset.defined()) out = out + shape_c(offset);
  return out;
}

int64_t Encoded::code_bytes() const { return (codes.numel() * code_bits + 7) / 8; }

int64_t Encoded::aux_bytes() const {
  int64_t n = scale.defined() ? scale.numel() : 0;
  if (table.defined()) n += table.numel();
  if (offset.defined()) n += offset.numel();
  return 4 * n;
}

// ---------------------------------------------------------------- common keys, storage
CommonOptions common_options(const QuantSpec& spec) {
  CommonOptions o;
  o.backward = parse_backward(spec.get("grad", "ste"));
  o.grad_ratio = spec.get_double("r", 0.0);
  if (o.grad_ratio < 0 || o.grad_ratio > 1)
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': r must be in [0, 1]");
  if (spec.flag("per_channel")) o.axis = spec.get_int("axis", 0);
  else if (spec.has("axis"))
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': axis= needs per_channel");
  if (spec.has("axis") && o.axis < 0)  // -1 would silently mean per tensor
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': axis must be >= 0");
  o.momentum = spec.get_double("momentum", 0.9);
  if (o.momentum < 0 || o.momentum >= 1)
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': momentum must be in [0, 1)");
  return o;
}

int64_t channels_along(int64_t axis, at::IntArrayRef shape, const QuantSpec& spec) {
  if (axis < 0) return 1;
  check_axis(spec, static_cast<int64_t>(shape.size()));
  return shape[axis];
}

void check_axis(const QuantSpec& spec, int64_t rank, const char* what) {
  const int64_t axis = common_options(spec).axis;
  if (axis >= rank)
    throw std::invalid_argument("quantizer '" + spec.to_string() + "': axis=" + std::to_string(axis) +
                                " is out of range for " + what + " of " + std::to_string(rank) +
                                " dimensions (valid: 0.." + std::to_string(rank - 1) + ")");
}

StorageCost storage_of(const QuantSpec& spec, at::IntArrayRef shape, int64_t aux_per_channel, int64_t aux_fixed) {
  StorageCost c;
  c.numel = c10::multiply_integers(shape);
  c.code_bits = spec.bits;
  c.aux_floats = aux_fixed;
  if (aux_per_channel != 0)
    c.aux_floats += aux_per_channel * channels_along(common_options(spec).axis, shape, spec);
  return c;
}

// ---------------------------------------------------------------- Quantizer
// The common keys are parsed (and so checked) here as well: the class is the public extension point, and a
// validated spec parses without error.
Quantizer::Quantizer(QuantSpec spec, Role role) : spec_(std::move(spec)), role_(role) {
  const CommonOptions o = common_options(spec_);
  backward_ = o.backward;
  grad_ratio_ = o.grad_ratio;
  axis_ = o.axis;
  momentum_ = o.momentum;
}

torch::Tensor Quantizer::levels(const torch::Tensor& x, int64_t channel) {
  torch::NoGradGuard ng;
  Encoded e = encode(x);
  int64_t L = int64_t(1) << e.code_bits;
  torch::Tensor T = e.table.defined()
                        ? (e.table.dim() == 2 ? e.table[channel] : e.table)
                        : torch::arange(L, torch::kFloat32).to(x.device()) + static_cast<float>(e.grid_base);
  auto pick = [&](const torch::Tensor& t) { return t.dim() == 0 ? t : t[channel]; };
  auto v = T * pick(e.scale);
  if (e.offset.defined()) v = v + pick(e.offset);
  return std::get<0>(torch::_unique(v.flatten(), /*sorted=*/true));
}

torch::Tensor Quantizer::ste(const torch::Tensor& xn, const torch::Tensor& qn, double lo, double hi) const {
  auto x = xn;
  if (backward_ == Backward::PWL_C) x = xn.clamp(lo, hi);
  auto q = qn.detach();
  if (backward_ != Backward::STE && grad_ratio_ > 0 && is_training())
    q = q + grad_ratio_ * (x.detach() - q);
  // x - x.detach() is exactly 0 in value, so the forward value is exactly q: export stays bit exact.
  return q + (x - x.detach());
}

torch::Tensor Quantizer::ste(const torch::Tensor& xn, const torch::Tensor& qn, const torch::Tensor& lo,
                             const torch::Tensor& hi) const {
  auto x = xn;
  if (backward_ == Backward::PWL_C) x = torch::max(torch::min(xn, hi), lo);
  auto q = qn.detach();
  if (backward_ != Backward::STE && grad_ratio_ > 0 && is_training())
    q = q + grad_ratio_ * (x.detach() - q);
  return q + (x - x.detach());
}

torch::Tensor Quantizer::channel_rows(const torch::Tensor& x) const {
  if (axis_ < 0) return x.reshape({1, -1});
  TORCH_CHECK(axis_ < x.dim(), "quantizer ", spec_.to_string(), ": channel axis ", axis_,
              " out of range for a tensor of dim ", x.dim());
  return x.movedim(axis_, 0).reshape({x.size(axis_), -1});
}

std::vector<int64_t> Quantizer::stat_shape(const torch::Tensor& x) const {
  std::vector<int64_t> s(x.dim(), 1);
  if (axis_ >= 0) s[axis_] = x.size(axis_);
  return s;
}

torch::Tensor Quantizer::bcast(const torch::Tensor& stat, const torch::Tensor& x) const {
  if (axis_ < 0 || stat.dim() == 0) return stat;
  return stat.reshape(stat_shape(x));
}

int64_t Quantizer::num_channels(at::IntArrayRef shape) const { return channels_along(axis_, shape, spec_); }

void Quantizer::check_bits(int bits) const {
  const auto& t = scheme_traits(spec_.scheme);
  if (bits < t.min_bits || bits > t.max_bits)
    throw std::invalid_argument("quantizer '" + spec_.to_string() + "': " + std::to_string(bits) +
                                " bits out of range (valid: " + std::to_string(t.min_bits) + ".." +
                                std::to_string(t.max_bits) + ")");
}

void Quantizer::check_finite(const torch::Tensor& stat, const char* what) const {
  if (!torch::isfinite(stat).all().item<bool>())
    throw std::domain_error("quantizer '" + spec_.to_string() + "': " + what +
                            " is NaN or infinite (the input contains NaN/inf)");
}

void Quantizer::add_running(const std::string& buffer, std::vector<int64_t> shape) {
  register_buffer(buffer, torch::zeros(shape));
  register_buffer(buffer + "_init", torch::zeros({}));
}

namespace {
BatchStatReducer& stat_reducer() {
  static BatchStatReducer r;
  return r;
}
}  // namespace

StatReduce stat_reduce_of(const std::string& buffer) {
  if (buffer == "max_abs" || buffer == "max") return StatReduce::Max;
  if (buffer == "min") return StatReduce::Min;
  return StatReduce::Mean;
}

void set_batch_stat_reducer(BatchStatReducer reducer) { stat_reducer() = std::move(reducer); }

torch::Tensor Quantizer::running(const std::string& buffer, const torch::Tensor& batch_in) {
  // named_buffers() returns a temporary dict (of tensors sharing the buffers' storage): keep it alive.
  auto bufs = named_buffers(/*recurse=*/false);
  auto* buf = bufs.find(buffer);
  auto* init = bufs.find(buffer + "_init");
  TORCH_CHECK(buf && init, "quantizer ", spec_.to_string(), ": running buffer '", buffer,
              "' was not added in the constructor");
  torch::Tensor batch_value = batch_in;
  if (is_training() && stat_reducer()) {
    // the global batch's statistic (same on every rank); a gradient through it stays the local one's
    torch::Tensor global;
    {
      torch::NoGradGuard ng;
      global = stat_reducer()(batch_in.detach(), stat_reduce_of(buffer));
    }
    batch_value = batch_in.requires_grad() ? batch_in + (global - batch_in.detach()) : global;
  }
  torch::NoGradGuard ng;
  if (is_training()) {
    if (buf->device() != batch_value.device()) buf->set_data(buf->to(batch_value.device()));
    if (init->item<float>() == 0) {
      buf->copy_(batch_value.detach());
      init->fill_(1);
    } else {
      buf->mul_(momentum_).add_(batch_value.detach() * (1 - momentum_));
    }
    return batch_value;
  }
  if (init->item<float>() == 0) return batch_value;
  return buf->to(batch_value.device());
}

}  // namespace autoqnn::quant
