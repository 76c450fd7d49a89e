#include "autoqnn/switchable_bn.h"

#include <algorithm>
#include <set>
#include <string>

#include "autoqnn/distributed.h"

namespace autoqnn {

namespace {
std::string list_str(const std::vector<int>& v) {
  std::string s;
  for (int b : v) s += (s.empty() ? "" : ",") + std::to_string(b);
  return s;
}
}  // namespace

// Training-mode BatchNorm over the global batch: per-channel [sum, sum of squares, count] summed over the
// ranks (differentiably, so the backward pass sums the statistics' gradients too), then the usual
// normalisation and running-statistics update (unbiased variance, momentum or cumulative average).
torch::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x) {
  const auto& o = bn.options;
  const int64_t C = x.size(1);
  const double n_local = static_cast<double>(x.numel() / std::max<int64_t>(1, C));
  auto stats = torch::cat({x.sum({0, 2, 3}), (x * x).sum({0, 2, 3}), torch::full({1}, n_local, x.options())});
  stats = dist::all_reduce_sum_autograd(stats);
  auto n = stats.narrow(0, 2 * C, 1);
  auto mean = stats.narrow(0, 0, C) / n;
  auto var = (stats.narrow(0, C, C) / n - mean * mean).clamp_min(0);
  auto y = (x - mean.view({1, C, 1, 1})) * torch::rsqrt(var + o.eps()).view({1, C, 1, 1});
  if (o.affine()) y = y * bn.weight.view({1, C, 1, 1}) + bn.bias.view({1, C, 1, 1});
  if (o.track_running_stats()) {
    torch::NoGradGuard ng;
    bn.num_batches_tracked.add_(1);
    const double m = o.momentum().has_value() ? *o.momentum() : 1.0 / bn.num_batches_tracked.item<double>();
    const double count = n.item<double>();
    bn.running_mean.mul_(1 - m).add_(mean.detach(), m);
    bn.running_var.mul_(1 - m).add_(var.detach() * (count / std::max(1.0, count - 1)), m);
  }
  return y;
}

torch::Tensor SwitchableBatchNorm2dImpl::forward(const torch::Tensor& x) {
  const bool global = sync_ && is_training() && dist::sync_batch_stats();
  if (active_ == 0) return global ? sync_batch_norm(*this, x) : torch::nn::BatchNorm2dImpl::forward(x);
  return global ? sync_batch_norm(*at_bits(active_), x) : at_bits(active_)->forward(x);
}

int set_sync_batchnorm(torch::nn::Module& m, bool on) {
  int n = 0;
  if (auto* self = dynamic_cast<SwitchableBatchNorm2dImpl*>(&m)) {
    self->set_sync(on);
    ++n;
  }
  for (auto& child : m.modules(/*include_self=*/false)) {
    if (auto* bn = dynamic_cast<SwitchableBatchNorm2dImpl*>(child.get())) {
      bn->set_sync(on);
      ++n;
    }
  }
  return n;
}

void SwitchableBatchNorm2dImpl::make_switchable(const std::vector<int>& bits) {
  if (bits.empty()) throw std::invalid_argument("switchable BatchNorm: empty bitwidth list");
  std::set<int> seen;
  for (int b : bits) {
    if (b <= 0) throw std::invalid_argument("switchable BatchNorm: bitwidth " + std::to_string(b) + " must be > 0");
    if (!seen.insert(b).second)
      throw std::invalid_argument("switchable BatchNorm: bitwidth " + std::to_string(b) + " listed twice");
  }
  if (is_switchable()) {
    if (bits == bits_) return;
    throw std::invalid_argument("switchable BatchNorm: already switchable for bits " + list_str(bits_) +
                                ", not " + list_str(bits));
  }
  torch::NoGradGuard ng;
  for (int b : bits) {
    torch::nn::BatchNorm2d bn(torch::nn::BatchNorm2dOptions(options.num_features())
                                  .eps(options.eps())
                                  .momentum(options.momentum())
                                  .affine(options.affine())
                                  .track_running_stats(options.track_running_stats()));
    if (weight.defined()) bn->weight.copy_(weight);
    if (bias.defined()) bn->bias.copy_(bias);
    if (running_mean.defined()) bn->running_mean.copy_(running_mean);
    if (running_var.defined()) bn->running_var.copy_(running_var);
    if (num_batches_tracked.defined()) bn->num_batches_tracked.copy_(num_batches_tracked);
    if (weight.defined()) bn->to(weight.device());
    bn->train(is_training());
    per_bit_.push_back(register_module("b" + std::to_string(b), bn));
  }
  bits_ = bits;
}

torch::nn::BatchNorm2d& SwitchableBatchNorm2dImpl::at_bits(int bits) {
  auto it = std::find(bits_.begin(), bits_.end(), bits);
  if (it == bits_.end())
    throw std::invalid_argument("switchable BatchNorm: no BatchNorm for " + std::to_string(bits) + " bits (" +
                                (bits_.empty() ? std::string("not switchable") : "valid: " + list_str(bits_)) + ")");
  return per_bit_[static_cast<size_t>(it - bits_.begin())];
}

void SwitchableBatchNorm2dImpl::select(int bits) {
  if (bits != 0) at_bits(bits);  // validates
  active_ = bits;
}

}  // namespace autoqnn
