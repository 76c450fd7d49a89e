#include "search/arch_optimizer.h"

#include <cmath>

namespace autoqnn::search {

nlohmann::json ArchAdamOptions::to_json() const {
  return {{"lr", lr}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}, {"weight_decay", weight_decay}};
}

ArchAdam::ArchAdam(std::vector<torch::Tensor> params, ArchAdamOptions opt) : params_(std::move(params)), opt_(opt) {
  for (size_t i = 0; i < params_.size(); ++i) {
    m_.push_back(register_buffer("m" + std::to_string(i), torch::zeros_like(params_[i]).detach()));
    v_.push_back(register_buffer("v" + std::to_string(i), torch::zeros_like(params_[i]).detach()));
  }
  step_ = register_buffer("step", torch::zeros({}, torch::kInt64));
}

void ArchAdam::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
}

int64_t ArchAdam::steps() const { return step_.item<int64_t>(); }

void ArchAdam::step() {
  torch::NoGradGuard ng;
  step_.add_(1);
  const double t = static_cast<double>(step_.item<int64_t>());
  const double bc1 = 1.0 - std::pow(opt_.beta1, t), bc2 = 1.0 - std::pow(opt_.beta2, t);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto g = p.grad();
    if (opt_.weight_decay != 0) g = g + opt_.weight_decay * p;
    m_[i].mul_(opt_.beta1).add_(g, 1.0 - opt_.beta1);
    v_[i].mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
    auto denom = (v_[i] / bc2).sqrt_().add_(opt_.eps);
    p.addcdiv_(m_[i], denom, -opt_.lr / bc1);
  }
}

}  // namespace autoqnn::search
