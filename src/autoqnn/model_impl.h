// Internal to the model zoo: the per-family factories and small shared helpers (not installed API).
#pragma once
#include <string>

#include "autoqnn/model.h"
#include "autoqnn/switchable_bn.h"

namespace autoqnn::detail {

// Throws std::invalid_argument naming the model when the config cannot be used.
void check_config(const std::string& model, const ModelConfig& cfg, int64_t min_image_size);
// Kaiming-normal (fan_out, ReLU) for every QuantConv2d weight below `m` (zero conv biases), BatchNorm
// weight 1 / bias 0; QuantLinear keeps the torch::nn::Linear default init.
void init_weights(torch::nn::Module& m);

ModelPtr make_lenet5(const ModelConfig& cfg);
ModelPtr make_resnet_cifar(const std::string& name, int depth, const ModelConfig& cfg);
ModelPtr make_vgg7(const ModelConfig& cfg);
ModelPtr make_mobilenetv2(const ModelConfig& cfg);

}  // namespace autoqnn::detail
