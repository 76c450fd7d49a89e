// VGG-7 (AutoQNN's vgg7_64): conv 64-64 / maxpool / 128-128 / maxpool / 256-256 / maxpool, every conv
// 3x3 pad 1 + BN + ReLU, then one fc on the flattened features (256 * (S/8)^2 inputs: 4096 for 32x32,
// 2304 for 28x28). Names: conv1..conv6, bn1..bn6, fc.
#include "autoqnn/model_impl.h"

namespace autoqnn {
namespace {

class Vgg7 : public Model {
 public:
  explicit Vgg7(const ModelConfig& cfg) : Model("vgg7", cfg) {
    detail::check_config("vgg7", cfg, 8);
    const int64_t widths[6] = {64, 64, 128, 128, 256, 256};
    int64_t in = cfg.in_channels;
    for (int i = 0; i < 6; ++i) {
      const auto k = std::to_string(i + 1);
      convs.push_back(
          register_module("conv" + k, QuantConv2d(QuantConv2dOptions(in, widths[i], 3).padding(1).bias(false))));
      bns.push_back(register_module("bn" + k, SwitchableBatchNorm2d(widths[i])));
      in = widths[i];
    }
    const int64_t s = cfg.image_size / 8;
    fc = register_module("fc", QuantLinear(QuantLinearOptions(256 * s * s, cfg.num_classes)));
    detail::init_weights(*this);
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = x;
    for (int i = 0; i < 6; ++i) {
      h = torch::relu(bns[i]->forward(convs[i]->forward(h)));
      if (i % 2 == 1) h = torch::max_pool2d(h, 2);
    }
    return fc->forward(h.flatten(1));
  }

 private:
  std::vector<QuantConv2d> convs;
  std::vector<SwitchableBatchNorm2d> bns;
  QuantLinear fc{nullptr};
};

}  // namespace

ModelPtr detail::make_vgg7(const ModelConfig& cfg) { return std::make_shared<Vgg7>(cfg); }

}  // namespace autoqnn
