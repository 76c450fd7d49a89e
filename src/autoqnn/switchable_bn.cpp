#include "autoqnn/switchable_bn.h"

#include <algorithm>
#include <set>
#include <string>

namespace autoqnn {

namespace {
std::string list_str(const std::vector<int>& v) {
  std::string s;
  for (int b : v) s += (s.empty() ? "" : ",") + std::to_string(b);
  return s;
}
}  // namespace

torch::Tensor SwitchableBatchNorm2dImpl::forward(const torch::Tensor& x) {
  if (active_ == 0) return torch::nn::BatchNorm2dImpl::forward(x);
  return at_bits(active_)->forward(x);
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
