// A model's inference graph as a short list of operations (conv, bn, relu, add, pool, flatten, linear, ...)
// over named values. Exporters (ONNX, src/autoqnn/onnx/) walk this description, not the C++ forward(), so
// any frontend that can describe its model this way gets them: the zoo does it by name (zoo_model_graph);
// an imported TorchScript model can supply its own list later.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "autoqnn/model.h"

namespace autoqnn {

enum class GraphOpKind {
  Conv,           // layer: a QuantConv2d (stride / padding / groups from its options), its quantizers apply
  Linear,         // layer: a QuantLinear; input [N, F]
  BatchNorm,      // inference BatchNorm (bn_*), folded into the preceding conv by exporters when possible
  Relu,
  Relu6,
  Add,            // inputs[0] + inputs[1]
  MaxPool,        // kernel = stride = `kernel`, no padding, floor mode
  GlobalAvgPool,  // mean over H, W keeping [N, C, 1, 1]
  Flatten,        // [N, ...] -> [N, prod(...)]
  SubsamplePad,   // ResNet option-A shortcut: x[:, :, ::stride, ::stride], channels zero-padded (pad_front, pad_back)
};
const char* graph_op_name(GraphOpKind k);

struct GraphOp {
  GraphOpKind kind = GraphOpKind::Relu;
  std::string name;                 // module name for conv / linear / bn ("layer1.0.conv1"), else a made-up one
  std::vector<std::string> inputs;  // value names
  std::string output;               // value name (unique)
  // Conv / Linear
  QuantLayer* layer = nullptr;
  // BatchNorm (the running statistics and affine parameters in use: a switchable BN's selected one)
  torch::Tensor bn_weight, bn_bias, bn_mean, bn_var;
  double bn_eps = 1e-5;
  // MaxPool / SubsamplePad
  int64_t kernel = 2, stride = 1, pad_front = 0, pad_back = 0;
};

struct ModelGraph {
  std::string model;                   // model name, for messages
  std::string input = "input";         // [N, C, H, W] float32
  std::vector<int64_t> input_chw;      // C, H, W
  std::string output;                  // logits [N, num_classes]
  int64_t num_classes = 0;
  std::vector<GraphOp> ops;            // in execution order; each input is the graph input or an earlier output
};

// The description of a zoo model (lenet5, resnet*, vgg7, mobilenetv2). Throws std::invalid_argument naming
// the model when it has none.
ModelGraph zoo_model_graph(Model& model);

// Runs the description with LibTorch ops (eval mode, quantizers as installed): the reference the exporters
// are checked against, and the check that a description matches its model's forward(). `values`, when
// given, receives every value by name (the graph input included).
torch::Tensor run_model_graph(const ModelGraph& g, const torch::Tensor& x,
                              std::map<std::string, torch::Tensor>* values = nullptr);

}  // namespace autoqnn
