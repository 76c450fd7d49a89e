// LeNet-5 with BatchNorm after each conv (trains robustly with plain SGD): conv1 6@5x5 (pad 2 for
// 28x28 inputs, 0 otherwise) - bn1 - relu - maxpool 2 - conv2 16@5x5 - bn2 - relu - maxpool 2 -
// fc1 120 - relu - fc2 84 - relu - fc3 num_classes.
#include "autoqnn/model_impl.h"

namespace autoqnn {
namespace {

class LeNet5 : public Model {
 public:
  explicit LeNet5(const ModelConfig& cfg) : Model("lenet5", cfg) {
    detail::check_config("lenet5", cfg, 12);
    const int64_t pad = cfg.image_size == 28 ? 2 : 0;
    const int64_t s1 = (cfg.image_size + 2 * pad - 4) / 2;  // after conv1 + pool
    const int64_t s2 = (s1 - 4) / 2;                         // after conv2 + pool
    conv1 = register_module("conv1", QuantConv2d(QuantConv2dOptions(cfg.in_channels, 6, 5).padding(pad).bias(false)));
    bn1 = register_module("bn1", SwitchableBatchNorm2d(6));
    conv2 = register_module("conv2", QuantConv2d(QuantConv2dOptions(6, 16, 5).bias(false)));
    bn2 = register_module("bn2", SwitchableBatchNorm2d(16));
    fc1 = register_module("fc1", QuantLinear(QuantLinearOptions(16 * s2 * s2, 120)));
    fc2 = register_module("fc2", QuantLinear(QuantLinearOptions(120, 84)));
    fc3 = register_module("fc3", QuantLinear(QuantLinearOptions(84, cfg.num_classes)));
    detail::init_weights(*this);
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = torch::max_pool2d(torch::relu(bn1->forward(conv1->forward(x))), 2);
    h = torch::max_pool2d(torch::relu(bn2->forward(conv2->forward(h))), 2);
    h = h.flatten(1);
    h = torch::relu(fc1->forward(h));
    h = torch::relu(fc2->forward(h));
    return fc3->forward(h);
  }

 private:
  QuantConv2d conv1{nullptr}, conv2{nullptr};
  SwitchableBatchNorm2d bn1{nullptr}, bn2{nullptr};
  QuantLinear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

}  // namespace

ModelPtr detail::make_lenet5(const ModelConfig& cfg) { return std::make_shared<LeNet5>(cfg); }

}  // namespace autoqnn
