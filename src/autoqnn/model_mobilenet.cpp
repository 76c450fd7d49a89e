// A small CIFAR-style MobileNetV2 (Sandler et al. 2018) at width 0.5: stem conv 3x3 stride 1, the
// paper's 17 inverted-residual blocks (t, c, n, s) = (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2)
// (6,96,3,1) (6,160,3,2) (6,320,1,1) with CIFAR strides (the paper's first two stride-2 stages use
// stride 1), channels x0.5 rounded to multiples of 8, a 1x1 conv to 640 channels, global average
// pooling, fc. Residual add only when stride 1 and in == out (as in the paper / torchvision).
// Names (kuangliu's CIFAR naming): conv1, bn1, layers.{i}.{conv1,bn1 (1x1 expand; absent when t = 1),
// conv2,bn2 (3x3 depthwise), conv3,bn3 (1x1 project)}, conv2, bn2, fc.
#include "autoqnn/model_impl.h"

#include <algorithm>

namespace autoqnn {
namespace {

int64_t make_divisible(double v, int64_t d = 8) {
  int64_t r = std::max<int64_t>(d, static_cast<int64_t>(v + d / 2.0) / d * d);
  if (r < 0.9 * v) r += d;
  return r;
}

class InvertedResidualImpl : public torch::nn::Module {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand)
      : residual_(stride == 1 && in == out) {
    const int64_t hidden = in * expand;
    if (expand != 1) {
      conv1 = register_module("conv1", QuantConv2d(QuantConv2dOptions(in, hidden, 1).bias(false)));
      bn1 = register_module("bn1", SwitchableBatchNorm2d(hidden));
    }
    conv2 = register_module(
        "conv2", QuantConv2d(QuantConv2dOptions(hidden, hidden, 3).stride(stride).padding(1).groups(hidden).bias(false)));
    bn2 = register_module("bn2", SwitchableBatchNorm2d(hidden));
    conv3 = register_module("conv3", QuantConv2d(QuantConv2dOptions(hidden, out, 1).bias(false)));
    bn3 = register_module("bn3", SwitchableBatchNorm2d(out));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = conv1 ? torch::relu6(bn1->forward(conv1->forward(x))) : x;
    h = torch::relu6(bn2->forward(conv2->forward(h)));
    h = bn3->forward(conv3->forward(h));
    return residual_ ? h + x : h;
  }

 private:
  bool residual_;
  QuantConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  SwitchableBatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2 : public Model {
 public:
  explicit MobileNetV2(const ModelConfig& cfg, double width = 0.5) : Model("mobilenetv2", cfg) {
    detail::check_config("mobilenetv2", cfg, 8);
    struct Stage { int64_t t, c, n, s; };
    const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2}, {6, 64, 4, 2},
                            {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t in = make_divisible(32 * width);
    const int64_t last = make_divisible(1280 * width);
    conv1 = register_module("conv1", QuantConv2d(QuantConv2dOptions(cfg.in_channels, in, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", SwitchableBatchNorm2d(in));
    torch::nn::Sequential seq;
    for (const auto& st : stages) {
      const int64_t out = make_divisible(st.c * width);
      for (int64_t i = 0; i < st.n; ++i) {
        seq->push_back(InvertedResidual(in, out, i == 0 ? st.s : 1, st.t));
        in = out;
      }
    }
    layers = register_module("layers", seq);
    conv2 = register_module("conv2", QuantConv2d(QuantConv2dOptions(in, last, 1).bias(false)));
    bn2 = register_module("bn2", SwitchableBatchNorm2d(last));
    fc = register_module("fc", QuantLinear(QuantLinearOptions(last, cfg.num_classes)));
    detail::init_weights(*this);
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = torch::relu6(bn1->forward(conv1->forward(x)));
    h = layers->forward(h);
    h = torch::relu6(bn2->forward(conv2->forward(h)));
    return fc->forward(h.mean({2, 3}));
  }

 private:
  QuantConv2d conv1{nullptr}, conv2{nullptr};
  SwitchableBatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential layers{nullptr};
  QuantLinear fc{nullptr};
};

}  // namespace

ModelPtr detail::make_mobilenetv2(const ModelConfig& cfg) { return std::make_shared<MobileNetV2>(cfg); }

}  // namespace autoqnn
