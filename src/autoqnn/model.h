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
// Throws std::invalid_argument listing the valid names for an unknown one.
ModelPtr make_model(const std::string& name, const ModelConfig& cfg = {});

// Per quantizable layer facts, measured by one forward pass on a [1, C, H, W] input.
struct LayerProfile {
  std::string name;                    // dotted name
  std::string kind;                    // conv2d | linear
  std::vector<int64_t> weight_shape;
  int64_t params = 0;                  // weight elements (bias excluded)
  int64_t macs = 0;                    // multiply-accumulates per image
  std::vector<int64_t> input_shape;    // of one image (batch dim dropped)
  std::vector<int64_t> output_shape;
  int64_t input_numel = 0;             // activation elements entering the layer (per image)
};
std::vector<LayerProfile> profile_model(Model& model);
// A stable hash of the layer names and weight shapes: "sha:<16 hex>" (policy <-> model check).
std::string model_fingerprint(Model& model);
int64_t count_parameters(torch::nn::Module& m);

}  // namespace autoqnn
