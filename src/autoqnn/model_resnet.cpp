// CIFAR-style ResNet (He et al. 2016, section 4.2): depth 6n+2, three stages of n BasicBlocks with
// 16 / 32 / 64 channels, global average pooling, fc. Shortcuts are option A (identity; when the shape
// changes: stride-2 subsampling + zero-padded channels), so they hold no parameters and resnet20 keeps
// its 0.27M parameters and 19 convs + 1 fc quantizable layers.
// Names: conv1, bn1, layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}, fc.
#include "autoqnn/model_impl.h"

namespace autoqnn {
namespace {

class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride) : in_(in_planes), out_(planes), stride_(stride) {
    conv1 = register_module(
        "conv1", QuantConv2d(QuantConv2dOptions(in_planes, planes, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", SwitchableBatchNorm2d(planes));
    conv2 = register_module("conv2", QuantConv2d(QuantConv2dOptions(planes, planes, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", SwitchableBatchNorm2d(planes));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(bn1->forward(conv1->forward(x)));
    out = bn2->forward(conv2->forward(out));
    return torch::relu(out + shortcut(x));
  }

 private:
  // Option A: identity, or x[:, :, ::s, ::s] with the new channels zero-padded half on each side.
  torch::Tensor shortcut(const torch::Tensor& x) const {
    if (stride_ == 1 && in_ == out_) return x;
    using torch::indexing::Slice;
    auto s = stride_ == 1 ? x : x.index({Slice(), Slice(), Slice(torch::indexing::None, torch::indexing::None, stride_),
                                         Slice(torch::indexing::None, torch::indexing::None, stride_)});
    const int64_t extra = out_ - in_, front = extra / 2;
    return torch::constant_pad_nd(s, {0, 0, 0, 0, front, extra - front}, 0);
  }

  int64_t in_, out_, stride_;
  QuantConv2d conv1{nullptr}, conv2{nullptr};
  SwitchableBatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(BasicBlock);

class ResNetCifar : public Model {
 public:
  ResNetCifar(const std::string& name, int depth, const ModelConfig& cfg) : Model(name, cfg) {
    detail::check_config(name, cfg, 4);
    if (depth < 8 || (depth - 2) % 6 != 0)
      throw std::invalid_argument(name + ": CIFAR ResNet depth must be 6n+2 (8, 14, 20, 32, 56, ...)");
    const int64_t n = (depth - 2) / 6;
    conv1 = register_module("conv1", QuantConv2d(QuantConv2dOptions(cfg.in_channels, 16, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", SwitchableBatchNorm2d(16));
    int64_t in = 16;
    auto stage = [&](int64_t planes, int64_t stride) {
      torch::nn::Sequential seq;
      for (int64_t i = 0; i < n; ++i) {
        seq->push_back(BasicBlock(in, planes, i == 0 ? stride : 1));
        in = planes;
      }
      return seq;
    };
    layer1 = register_module("layer1", stage(16, 1));
    layer2 = register_module("layer2", stage(32, 2));
    layer3 = register_module("layer3", stage(64, 2));
    fc = register_module("fc", QuantLinear(QuantLinearOptions(64, cfg.num_classes)));
    detail::init_weights(*this);
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = torch::relu(bn1->forward(conv1->forward(x)));
    h = layer3->forward(layer2->forward(layer1->forward(h)));
    return fc->forward(h.mean({2, 3}));
  }

 private:
  QuantConv2d conv1{nullptr};
  SwitchableBatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
  QuantLinear fc{nullptr};
};

}  // namespace

ModelPtr detail::make_resnet_cifar(const std::string& name, int depth, const ModelConfig& cfg) {
  return std::make_shared<ResNetCifar>(name, depth, cfg);
}

}  // namespace autoqnn
