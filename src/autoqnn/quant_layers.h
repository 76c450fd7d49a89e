// QuantConv2d / QuantLinear: behave exactly like torch::nn::Conv2d / Linear while their slots are empty;
// a weight slot and an input-activation slot take any FakeQuantizer (a scheme, the supernet's mixed
// quantizer, QPL's learned-bit quantizer).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "quantizers/quantizer.h"

namespace autoqnn {

using FakeQuantPtr = std::shared_ptr<quant::FakeQuantizer>;

// Common part of both layers: the two slots and the shape facts the policy needs.
class QuantLayer {
 public:
  virtual ~QuantLayer() = default;
  virtual torch::Tensor& weight_param() = 0;
  virtual torch::Tensor weight_param() const = 0;
  virtual const char* kind() const = 0;  // "conv2d" | "linear"
  // Output channels first: conv [out, in/groups, kh, kw], linear [out, in].
  std::vector<int64_t> weight_shape() const { return weight_param().sizes().vec(); }
  int64_t weight_numel() const { return weight_param().numel(); }

  void set_weight_quantizer(FakeQuantPtr q);  // nullptr -> float
  void set_act_quantizer(FakeQuantPtr q);     // nullptr -> float
  const FakeQuantPtr& weight_quantizer() const { return wq_; }
  const FakeQuantPtr& act_quantizer() const { return aq_; }
  // The weight as the layer uses it (fake-quantized when a weight quantizer is set).
  torch::Tensor effective_weight();

  // Shapes seen by the last forward while recording (see profile_model in model.h).
  bool record_shapes = false;
  std::vector<int64_t> last_input_shape, last_output_shape;

 protected:
  virtual torch::nn::Module& as_module() = 0;
  torch::Tensor quantize_input(const torch::Tensor& x);
  void record(const torch::Tensor& in, const torch::Tensor& out);
  FakeQuantPtr wq_, aq_;
};

// The module part both layers share: the options, the parameters, the slots' access to them.
template <class Options>
class QuantLayerModule : public torch::nn::Module, public QuantLayer {
 public:
  torch::Tensor& weight_param() override { return weight; }
  torch::Tensor weight_param() const override { return weight; }

  Options options;
  torch::Tensor weight, bias;

 protected:
  explicit QuantLayerModule(const Options& o) : options(o) {}
  torch::nn::Module& as_module() override { return *this; }
};

struct QuantConv2dOptions {
  QuantConv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, kernel_size);
  TORCH_ARG(int64_t, stride) = 1;
  TORCH_ARG(int64_t, padding) = 0;
  TORCH_ARG(int64_t, groups) = 1;
  TORCH_ARG(bool, bias) = true;
};

class QuantConv2dImpl : public QuantLayerModule<QuantConv2dOptions> {
 public:
  explicit QuantConv2dImpl(const QuantConv2dOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  void reset_parameters();  // the same init as torch::nn::Conv2d (kaiming_uniform a=sqrt(5))
  const char* kind() const override { return "conv2d"; }
  void pretty_print(std::ostream& stream) const override;
};
TORCH_MODULE(QuantConv2d);

struct QuantLinearOptions {
  QuantLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
};

class QuantLinearImpl : public QuantLayerModule<QuantLinearOptions> {
 public:
  explicit QuantLinearImpl(const QuantLinearOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  void reset_parameters();  // the same init as torch::nn::Linear
  const char* kind() const override { return "linear"; }
  void pretty_print(std::ostream& stream) const override;
};
TORCH_MODULE(QuantLinear);

// A quantizable layer found in a model, with its stable dotted name ("layer2.0.conv1").
struct NamedQuantLayer {
  std::string name;
  QuantLayer* layer;
  std::shared_ptr<torch::nn::Module> module;
};
// Every QuantConv2d / QuantLinear below `root`, in registration (forward) order.
std::vector<NamedQuantLayer> quant_layers(torch::nn::Module& root);

}  // namespace autoqnn
