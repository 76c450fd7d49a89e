// The model zoo: every model is built from QuantConv2d / QuantLinear so any layer can be quantized.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "autoqnn/quant_layers.h"

namespace autoqnn {

struct ModelConfig {
  int64_t in_channels = 1;   // 1 (Fashion-MNIST) or 3 (CIFAR-10)
  int64_t image_size = 28;   // 28 or 32
  int64_t num_classes = 10;
};

class Model : public torch::nn::Module {
 public:
  Model(std::string name, ModelConfig cfg) : name_(std::move(name)), cfg_(cfg) {}
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;  // logits [N, num_classes]
  const std::string& name() const { return name_; }
  const ModelConfig& config() const { return cfg_; }

 private:
  std::string name_;
  ModelConfig cfg_;
};
using ModelPtr = std::shared_ptr<Model>;

struct ModelInfo {
  std::string name;
  std::string description;
};
// Names accepted by make_model, with one-line descriptions.
const std::vector<ModelInfo>& model_zoo();
// Throws std::invalid_argument listing the valid names for an unknown one (or for a config the model
// cannot take). Zoo: lenet5, resnet8/14/20/32/56, vgg7, mobilenetv2 (see docs/models.md).
// A name holding '.' or '/' is a TorchScript file (torchscript_model.h): imported with `cfg` as its input.
ModelPtr make_model(const std::string& name, const ModelConfig& cfg = {});
// True for a name make_model reads as a file (holds '.' or '/'; zoo names hold neither).
bool is_imported_model_name(const std::string& name);

// Per quantizable layer facts, measured by one forward pass on a [1, C, H, W] input.
struct LayerProfile {
  std::string name;                    // dotted name
  std::string kind;                    // conv1d | conv2d | conv3d | linear
  std::vector<int64_t> weight_shape;
  int64_t params = 0;                  // weight elements (bias excluded)
  int64_t macs = 0;                    // multiply-accumulates per image
  std::vector<int64_t> input_shape;    // of one image (batch dim dropped)
  std::vector<int64_t> output_shape;
  int64_t input_numel = 0;             // activation elements entering the layer (per image)
};
// Runs one forward in eval mode under NoGradGuard on zeros [1, C, H, W] with record_shapes on; restores
// record_shapes = false and every module's training flag afterwards (also when forward throws).
// macs: conv out_h*out_w*out_ch*(in_ch/groups)*kh*kw; linear in*out (per output row).
std::vector<LayerProfile> profile_model(Model& model);
// Multiply-accumulates per image of the quantizable layers (one profiling forward).
int64_t model_macs(Model& model);
// A stable hash of the quant layers' names and weight shapes, "fnv1a64:<16 lower-case hex>": FNV-1a 64
// over the concatenation of "name:d0xd1x...;" per layer in quant_layers() order, e.g.
// "conv1:6x1x5x5;conv2:16x6x5x5;fc1:120x400;..." (policy <-> model check; not a cryptographic hash).
std::string model_fingerprint(Model& model);
// All parameters (recursively; includes learned quantizer parameters when quantizer slots are set).
int64_t count_parameters(torch::nn::Module& m);

}  // namespace autoqnn
