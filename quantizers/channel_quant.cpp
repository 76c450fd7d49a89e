// Per-channel bitwidths and the bias correction of weights: see channel_quant.h and docs/ptq.md.
#include "quantizers/channel_quant.h"

#include <stdexcept>

#include "quantizers/registry.h"

namespace autoqnn::quant {

Correction parse_correction(const std::string& s) {
  if (s.empty() || s == "none") return Correction::None;
  if (s == "mean") return Correction::Mean;
  if (s == "mean+var") return Correction::MeanVar;
  throw std::invalid_argument("unknown bias correction '" + s + "' (valid: mean, mean+var)");
}

const char* correction_name(Correction c) {
  switch (c) {
    case Correction::None: return "none";
    case Correction::Mean: return "mean";
    case Correction::MeanVar: return "mean+var";
  }
  return "?";
}

int correction_floats_per_channel(Correction c) {
  return c == Correction::None ? 0 : c == Correction::Mean ? 1 : 2;
}

namespace {
QuantizerPtr make_at(const QuantSpec& spec, int bits, Role role) {
  QuantSpec s = spec;
  s.bits = bits;
  auto q = make_quantizer(s, role);  // validates once, then constructs
  if (!q) throw std::invalid_argument("per-channel bits need a quantizing scheme, not '" + spec.to_string() + "'");
  return q;
}
}  // namespace

// ---------------------------------------------------------------- weights
ChannelWeightQuantizer::ChannelWeightQuantizer(QuantSpec spec, std::vector<int> channel_bits, Correction corr,
                                               int64_t out_channels)
    : spec_(std::move(spec)), channel_bits_(std::move(channel_bits)), corr_(corr), C_(out_channels) {
  if (!channel_bits_.empty() && static_cast<int64_t>(channel_bits_.size()) != C_)
    throw std::invalid_argument("channel_bits has " + std::to_string(channel_bits_.size()) + " entries for " +
                                std::to_string(C_) + " output channels");
  std::vector<int> bits = channel_bits_;
  if (bits.empty()) bits.push_back(spec_.bits);
  for (int b : bits)
    if (!q_.count(b)) q_[b] = register_module("b" + std::to_string(b), make_at(spec_, b, Role::Weight));
  if (corr_ != Correction::None) {
    corr_scale = register_buffer("corr_scale", torch::ones({C_}));
    corr_shift = register_buffer("corr_shift", torch::zeros({C_}));
  }
}

QuantizerPtr ChannelWeightQuantizer::at_bits(int bits) const { return q_.at(bits); }

std::string ChannelWeightQuantizer::describe() const {
  std::string s = spec_.to_string();
  if (!channel_bits_.empty()) s += " (per-channel bits)";
  if (corr_ != Correction::None) s += std::string(" + bias correction ") + correction_name(corr_);
  return s;
}

torch::Tensor ChannelWeightQuantizer::base(const torch::Tensor& w) {
  if (channel_bits_.empty()) return q_.at(spec_.bits)->forward(w);
  TORCH_CHECK(w.size(0) == C_, "ChannelWeightQuantizer: weight has ", w.size(0), " output channels, expected ", C_);
  std::vector<torch::Tensor> rows;
  rows.reserve(static_cast<size_t>(C_));
  for (int64_t c = 0; c < C_; ++c) rows.push_back(at_bits(channel_bits_[c])->forward(w.narrow(0, c, 1)));
  return torch::cat(rows, 0);
}

torch::Tensor ChannelWeightQuantizer::forward(const torch::Tensor& w) {
  auto q = base(w);
  if (corr_ == Correction::None) return q;
  std::vector<int64_t> s(w.dim(), 1);
  s[0] = C_;
  auto sc = corr_scale.to(q.device()).reshape(s), sh = corr_shift.to(q.device()).reshape(s);
  if (corr_ == Correction::MeanVar) q = q * sc;
  return q + sh;
}

std::vector<Encoded> ChannelWeightQuantizer::encode_parts(const torch::Tensor& w) {
  std::vector<Encoded> parts;
  if (channel_bits_.empty()) {
    parts.push_back(q_.at(spec_.bits)->encode(w));
    return parts;
  }
  for (int64_t c = 0; c < C_; ++c) parts.push_back(at_bits(channel_bits_[c])->encode(w.narrow(0, c, 1)));
  return parts;
}

void ChannelWeightQuantizer::calibrate(const torch::Tensor& w) {
  if (channel_bits_.empty()) {
    q_.at(spec_.bits)->calibrate(w);
    return;
  }
  // A scheme instance is shared by the channels of one bitwidth: calibrate it on those channels.
  for (auto& [b, q] : q_) {
    std::vector<int64_t> idx;
    for (int64_t c = 0; c < C_; ++c)
      if (channel_bits_[c] == b) idx.push_back(c);
    q->calibrate(w.index_select(0, torch::tensor(idx, torch::kLong).to(w.device())));
  }
}

void ChannelWeightQuantizer::fit_correction(const torch::Tensor& w) {
  if (corr_ == Correction::None) return;
  torch::NoGradGuard ng;
  const bool was = is_training();
  eval();
  auto q = base(w.detach()).to(torch::kFloat64).reshape({C_, -1});
  train(was);
  auto x = w.detach().to(torch::kFloat64).reshape({C_, -1});
  auto mq = q.mean(1), mw = x.mean(1);
  auto xi = torch::ones_like(mq);
  if (corr_ == Correction::MeanVar) {
    auto nq = (q - mq.unsqueeze(1)).norm(2, 1), nw = (x - mw.unsqueeze(1)).norm(2, 1);
    xi = torch::where(nq > 0, nw / nq.clamp_min(1e-300), torch::ones_like(nq));
  }
  corr_scale.copy_(xi.to(torch::kFloat32));
  corr_shift.copy_((mw - xi * mq).to(torch::kFloat32));
}

int64_t ChannelWeightQuantizer::storage_bytes(const QuantSpec& spec, const std::vector<int64_t>& shape,
                                              const std::vector<int>& channel_bits, Correction corr) {
  int64_t bytes = 0;
  if (channel_bits.empty()) {
    bytes = storage_cost(spec, shape, Role::Weight).bytes();
  } else {
    std::vector<int64_t> row = shape;
    row[0] = 1;
    for (int b : channel_bits) {
      QuantSpec s = spec;
      s.bits = b;
      bytes += storage_cost(s, row, Role::Weight).bytes();
    }
  }
  return bytes + 4 * correction_floats_per_channel(corr) * shape.at(0);
}

// ---------------------------------------------------------------- activations
ChannelActQuantizer::ChannelActQuantizer(const QuantSpec& spec, const std::vector<int>& channel_bits)
    : spec_(spec), bits_(channel_bits) {
  if (bits_.empty()) throw std::invalid_argument("ChannelActQuantizer: no channels");
  for (size_t c = 0; c < bits_.size(); ++c)
    q_.push_back(register_module("c" + std::to_string(c), make_at(spec_, bits_[c], Role::Activation)));
}

std::string ChannelActQuantizer::describe() const { return spec_.to_string() + " (per-channel bits)"; }

torch::Tensor ChannelActQuantizer::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2 && x.size(1) == static_cast<int64_t>(q_.size()), "ChannelActQuantizer (", spec_.to_string(),
              "): input has ", x.dim() >= 2 ? x.size(1) : 0, " channels, the policy gives ", q_.size());
  std::vector<torch::Tensor> parts;
  parts.reserve(q_.size());
  for (size_t c = 0; c < q_.size(); ++c) {
    auto xc = x.narrow(1, static_cast<int64_t>(c), 1);
    if (calibrate_on_forward) q_[c]->calibrate(xc);
    parts.push_back(q_[c]->forward(xc));
  }
  return torch::cat(parts, 1);
}

}  // namespace autoqnn::quant
