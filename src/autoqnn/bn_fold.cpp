#include "autoqnn/bn_fold.h"

#include <map>

namespace autoqnn::ptq {

namespace {
std::map<std::string, torch::nn::BatchNorm2dImpl*> batchnorms(Model& model) {
  std::map<std::string, torch::nn::BatchNorm2dImpl*> out;
  for (const auto& item : model.named_modules("", false))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(item.value().get())) out[item.key()] = bn;
  return out;
}

std::string bn_name_for(const std::string& conv, const std::map<std::string, torch::nn::BatchNorm2dImpl*>& bns) {
  const auto dot = conv.rfind('.');
  const std::string prefix = dot == std::string::npos ? "" : conv.substr(0, dot + 1);
  const std::string last = dot == std::string::npos ? conv : conv.substr(dot + 1);
  if (last.rfind("conv", 0) == 0) {
    std::string cand = prefix + "bn" + last.substr(4);
    if (bns.count(cand)) return cand;
  }
  if (!last.empty() && last.find_first_not_of("0123456789") == std::string::npos) {
    std::string cand = prefix + std::to_string(std::stoll(last) + 1);
    if (bns.count(cand)) return cand;
  }
  return "";
}
}  // namespace

std::vector<std::pair<std::string, std::string>> bn_fold_pairs(Model& model) {
  auto bns = batchnorms(model);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& l : quant_layers(model)) {
    if (std::string(l.layer->kind()) != "conv2d") continue;
    std::string bn = bn_name_for(l.name, bns);
    if (!bn.empty()) out.emplace_back(l.name, bn);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> fold_batchnorm(Model& model) {
  auto pairs = bn_fold_pairs(model);
  auto bns = batchnorms(model);
  std::map<std::string, QuantConv2dImpl*> convs;
  for (const auto& l : quant_layers(model))
    if (auto* c = dynamic_cast<QuantConv2dImpl*>(l.module.get())) convs[l.name] = c;
  torch::NoGradGuard ng;
  for (const auto& [cn, bnn] : pairs) {
    QuantConv2dImpl* conv = convs.at(cn);
    torch::nn::BatchNorm2dImpl* bn = bns.at(bnn);
    TORCH_CHECK(bn->options.track_running_stats() && bn->running_mean.defined(), "BN '", bnn,
                "' has no running statistics to fold");
    TORCH_CHECK(bn->options.affine(), "BN '", bnn, "' is not affine: cannot hold the folded bias");
    const double eps = bn->options.eps();
    auto dt = torch::kFloat64;
    auto gamma = bn->weight.to(dt);
    auto beta = bn->bias.to(dt);
    auto g = gamma / (bn->running_var.to(dt) + eps).sqrt();
    auto b = conv->bias.defined() ? conv->bias.to(dt) : torch::zeros_like(g);
    auto new_b = beta + (b - bn->running_mean.to(dt)) * g;
    std::vector<int64_t> s(conv->weight.dim(), 1);
    s[0] = -1;
    conv->weight.copy_((conv->weight.to(dt) * g.reshape(s)).to(conv->weight.scalar_type()));
    if (conv->bias.defined()) conv->bias.zero_();
    bn->weight.fill_(1.0);
    bn->bias.copy_(new_b.to(bn->bias.scalar_type()));
    bn->running_mean.zero_();
    bn->running_var.fill_(1.0 - eps);
  }
  return pairs;
}

}  // namespace autoqnn::ptq
