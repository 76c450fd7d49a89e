#include "autoqnn/quant_layers.h"

#include <cmath>

namespace autoqnn {

void QuantLayer::set_weight_quantizer(FakeQuantPtr q) {
  auto& m = as_module();
  if (m.named_children().contains("wq")) m.unregister_module("wq");
  wq_ = std::move(q);
  if (wq_) m.register_module("wq", wq_);
}

void QuantLayer::set_act_quantizer(FakeQuantPtr q) {
  auto& m = as_module();
  if (m.named_children().contains("aq")) m.unregister_module("aq");
  aq_ = std::move(q);
  if (aq_) m.register_module("aq", aq_);
}

torch::Tensor QuantLayer::effective_weight() {
  return wq_ ? wq_->forward(weight_param()) : weight_param();
}

torch::Tensor QuantLayer::quantize_input(const torch::Tensor& x) { return aq_ ? aq_->forward(x) : x; }

void QuantLayer::record(const torch::Tensor& in, const torch::Tensor& out) {
  if (!record_shapes) return;
  last_input_shape = in.sizes().vec();
  last_output_shape = out.sizes().vec();
}

// ------------------------------------------------------------------ QuantConv2d
QuantConv2dImpl::QuantConv2dImpl(const QuantConv2dOptions& o) : QuantLayerModule(o) {
  TORCH_CHECK(o.in_channels() > 0 && o.out_channels() > 0 && o.kernel_size() > 0 && o.groups() > 0,
              "QuantConv2d: channels, kernel size and groups must be positive");
  TORCH_CHECK(o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
              "QuantConv2d: channels must be divisible by groups");
  weight = register_parameter(
      "weight", torch::empty({o.out_channels(), o.in_channels() / o.groups(), o.kernel_size(), o.kernel_size()}));
  if (o.bias()) bias = register_parameter("bias", torch::empty({o.out_channels()}));
  reset_parameters();
}

void QuantConv2dImpl::reset_parameters() {
  torch::NoGradGuard ng;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    auto fan_in = weight.size(1) * weight.size(2) * weight.size(3);
    double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor QuantConv2dImpl::forward(const torch::Tensor& x) {
  auto xin = quantize_input(x);
  auto out = torch::conv2d(xin, effective_weight(), bias, {options.stride(), options.stride()},
                           {options.padding(), options.padding()}, /*dilation=*/{1, 1}, options.groups());
  record(x, out);
  return out;
}

void QuantConv2dImpl::pretty_print(std::ostream& s) const {
  s << "QuantConv2d(" << options.in_channels() << ", " << options.out_channels()
    << ", kernel_size=" << options.kernel_size() << ", stride=" << options.stride()
    << ", padding=" << options.padding();
  if (options.groups() != 1) s << ", groups=" << options.groups();
  if (!options.bias()) s << ", bias=false";
  if (wq_) s << ", weight=" << wq_->describe();
  if (aq_) s << ", act=" << aq_->describe();
  s << ")";
}

// ------------------------------------------------------------------ QuantLinear
QuantLinearImpl::QuantLinearImpl(const QuantLinearOptions& o) : QuantLayerModule(o) {
  TORCH_CHECK(o.in_features() > 0 && o.out_features() > 0, "QuantLinear: features must be positive");
  weight = register_parameter("weight", torch::empty({o.out_features(), o.in_features()}));
  if (o.bias()) bias = register_parameter("bias", torch::empty({o.out_features()}));
  reset_parameters();
}

void QuantLinearImpl::reset_parameters() {
  torch::NoGradGuard ng;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    double bound = 1.0 / std::sqrt(static_cast<double>(weight.size(1)));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor QuantLinearImpl::forward(const torch::Tensor& x) {
  auto xin = quantize_input(x);
  auto out = torch::linear(xin, effective_weight(), bias);
  record(x, out);
  return out;
}

void QuantLinearImpl::pretty_print(std::ostream& s) const {
  s << "QuantLinear(in_features=" << options.in_features() << ", out_features=" << options.out_features();
  if (!options.bias()) s << ", bias=false";
  if (wq_) s << ", weight=" << wq_->describe();
  if (aq_) s << ", act=" << aq_->describe();
  s << ")";
}

// ------------------------------------------------------------------ discovery
std::vector<NamedQuantLayer> quant_layers(torch::nn::Module& root) {
  std::vector<NamedQuantLayer> out;
  for (const auto& item : root.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto& mod = item.value();
    // QuantConv2d, QuantLinear, and the layers of imported TorchScript models (torchscript_model.h)
    if (auto* q = dynamic_cast<QuantLayer*>(mod.get())) out.push_back({item.key(), q, mod});
  }
  return out;
}

}  // namespace autoqnn
