// The zoo table, make_model, and the model-level utilities (profile, fingerprint, parameter count).
#include "autoqnn/model.h"

#include <cstdio>
#include <functional>
#include <stdexcept>

#include "autoqnn/model_impl.h"
#include "autoqnn/runtime.h"
#include "autoqnn/torchscript_model.h"

namespace autoqnn {

// ------------------------------------------------------------------ shared helpers
void detail::check_config(const std::string& model, const ModelConfig& cfg, int64_t min_image_size) {
  if (cfg.in_channels <= 0 || cfg.num_classes <= 0)
    throw std::invalid_argument(model + ": in_channels and num_classes must be positive");
  if (cfg.image_size < min_image_size)
    throw std::invalid_argument(model + ": image_size " + std::to_string(cfg.image_size) + " is too small (min " +
                                std::to_string(min_image_size) + ")");
}

void detail::init_weights(torch::nn::Module& root) {
  torch::NoGradGuard ng;
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* c = dynamic_cast<QuantConv2dImpl*>(m.get())) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (c->bias.defined()) c->bias.zero_();
    } else if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) {
      if (bn->weight.defined()) bn->weight.fill_(1.0);
      if (bn->bias.defined()) bn->bias.zero_();
    }
  }
}

// ------------------------------------------------------------------ zoo
namespace {

struct ZooEntry {
  ModelInfo info;
  std::function<ModelPtr(const ModelConfig&)> make;
};

const std::vector<ZooEntry>& zoo_entries() {
  static const std::vector<ZooEntry> z = {
      {{"lenet5", "LeNet-5 with BN: conv 6@5x5, conv 16@5x5, fc 120-84-10 (~62K params)"}, detail::make_lenet5},
      {{"resnet8", "CIFAR ResNet-8: 3 stages x 1 BasicBlock, 16-32-64 channels, option-A shortcuts (~75K)"},
       [](const ModelConfig& c) { return detail::make_resnet_cifar("resnet8", 8, c); }},
      {{"resnet14", "CIFAR ResNet-14: 3 stages x 2 BasicBlocks, option-A shortcuts (~0.17M)"},
       [](const ModelConfig& c) { return detail::make_resnet_cifar("resnet14", 14, c); }},
      {{"resnet20", "CIFAR ResNet-20: 3 stages x 3 BasicBlocks, option-A shortcuts (0.27M)"},
       [](const ModelConfig& c) { return detail::make_resnet_cifar("resnet20", 20, c); }},
      {{"resnet32", "CIFAR ResNet-32: 3 stages x 5 BasicBlocks, option-A shortcuts (0.46M)"},
       [](const ModelConfig& c) { return detail::make_resnet_cifar("resnet32", 32, c); }},
      {{"resnet56", "CIFAR ResNet-56: 3 stages x 9 BasicBlocks, option-A shortcuts (0.85M)"},
       [](const ModelConfig& c) { return detail::make_resnet_cifar("resnet56", 56, c); }},
      {{"vgg7", "VGG-7 (vgg7_64): conv 64-64-128-128-256-256 with BN, maxpool per pair, one fc (~1.2M)"},
       detail::make_vgg7},
      {{"mobilenetv2", "CIFAR MobileNetV2 x0.5: 17 inverted residual blocks, depthwise convs, 640-ch head (~0.59M)"},
       detail::make_mobilenetv2},
  };
  return z;
}

}  // namespace

const std::vector<ModelInfo>& model_zoo() {
  static const std::vector<ModelInfo> infos = [] {
    std::vector<ModelInfo> v;
    for (const auto& e : zoo_entries()) v.push_back(e.info);
    return v;
  }();
  return infos;
}

bool is_imported_model_name(const std::string& name) {
  return name.find('.') != std::string::npos || name.find('/') != std::string::npos;
}

ModelPtr make_model(const std::string& name, const ModelConfig& cfg) {
  if (is_imported_model_name(name)) {  // zoo names hold neither '.' nor '/'
    if (!file_exists(name)) throw std::invalid_argument("model file '" + name + "' does not exist");
    if (!is_torchscript_file(name))
      throw std::invalid_argument("model file '" + name + "' is not a TorchScript module (save it with "
                                  "torch.jit.script(m).save(path) or torch.jit.trace(m, x).save(path))");
    return TorchScriptModel::from_file(name, cfg);
  }
  for (const auto& e : zoo_entries())
    if (e.info.name == name) return e.make(cfg);
  std::string valid;
  for (const auto& e : zoo_entries()) valid += (valid.empty() ? "" : ", ") + e.info.name;
  throw std::invalid_argument("unknown model '" + name + "'; valid: " + valid);
}

// ------------------------------------------------------------------ profile / fingerprint / count
std::vector<LayerProfile> profile_model(Model& model) {
  // Record each module's own mode; restoring in pre-order (root first) makes the children's flags win.
  std::vector<std::pair<torch::nn::Module*, bool>> modes;
  modes.emplace_back(&model, model.is_training());
  for (auto& m : model.modules(/*include_self=*/false)) modes.emplace_back(m.get(), m->is_training());
  auto layers = quant_layers(model);

  struct Restore {
    std::vector<std::pair<torch::nn::Module*, bool>>& modes;
    std::vector<NamedQuantLayer>& layers;
    ~Restore() {
      for (auto& l : layers) l.layer->record_shapes = false;
      for (auto& [m, t] : modes) m->train(t);  // pre-order: a child's own flag is applied after its parent's
    }
  } restore{modes, layers};

  for (auto& l : layers) {
    l.layer->record_shapes = true;
    l.layer->last_input_shape.clear();
    l.layer->last_output_shape.clear();
  }
  model.eval();
  {
    torch::NoGradGuard ng;
    const auto& c = model.config();
    // On the model's device (a model already moved to CUDA is profiled there).
    auto dev = layers.empty() ? torch::Device(torch::kCPU) : layers[0].layer->weight_param().device();
    model.forward(torch::zeros({1, c.in_channels, c.image_size, c.image_size}, torch::TensorOptions().device(dev)));
  }

  std::vector<LayerProfile> out;
  for (auto& l : layers) {
    LayerProfile p;
    p.name = l.name;
    p.kind = l.layer->kind();
    p.weight_shape = l.layer->weight_shape();
    p.params = l.layer->weight_numel();
    const auto& in = l.layer->last_input_shape;
    const auto& o = l.layer->last_output_shape;
    if (in.size() > 1) p.input_shape.assign(in.begin() + 1, in.end());
    if (o.size() > 1) p.output_shape.assign(o.begin() + 1, o.end());
    if (!p.input_shape.empty()) {
      p.input_numel = 1;
      for (auto d : p.input_shape) p.input_numel *= d;
    }
    if (!p.output_shape.empty()) {
      int64_t out_numel = 1;
      for (auto d : p.output_shape) out_numel *= d;
      const auto& w = p.weight_shape;
      if (p.kind.rfind("conv", 0) == 0) {
        // out_h * out_w * out_ch * (in_ch / groups) * kh * kw  ==  output numel * weight numel / out_ch
        int64_t per_out = 1;
        for (size_t d = 1; d < w.size(); ++d) per_out *= w[d];
        p.macs = out_numel * per_out;
      } else {
        // in * out per output row (one row for a [1, in] input)
        p.macs = out_numel * w[1];
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

int64_t model_macs(Model& model) {
  int64_t macs = 0;
  for (const auto& p : profile_model(model)) macs += p.macs;
  return macs;
}

std::string model_fingerprint(Model& model) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  auto feed = [&h](const std::string& s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 0x100000001b3ull;  // FNV prime
    }
  };
  for (const auto& l : quant_layers(model)) {
    std::string s = l.name + ":";
    const auto shape = l.layer->weight_shape();
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
    feed(s + ";");
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return buf;
}

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters(/*recurse=*/true)) n += p.numel();
  return n;
}

}  // namespace autoqnn
