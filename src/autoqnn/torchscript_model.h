// A user's own network, imported from a TorchScript file (torch.jit.script(m).save / torch.jit.trace(m, x).save),
// as a Model like the zoo's. Every Conv1d/2d/3d and Linear whose weight is a parameter of the module is a
// quantizable layer named by its module path ("layer1.0.conv1"). The forward graph is inlined and the
// operators autoqnn::quant_act / autoqnn::quant_weight / autoqnn::observe are inserted around each such node;
// their kernels (CompositeImplicitAutograd) call the layer's quantizer slots, so the same quantizer objects
// as for zoo layers (fixed policy, supernet mix, learned bits) run in forward and receive gradients.
// The module's parameters and buffers are registered, by the same dotted names, as this Model's own (the
// very same tensors), so optimisers, checkpoints and policies see a plain Model.
#pragma once
#include <torch/script.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "autoqnn/model.h"

namespace autoqnn {

// True when `name` names an existing file that is a TorchScript archive (a zip holding code/ and data.pkl)
// rather than an autoqnn checkpoint; cheap (reads the zip directory only).
bool is_torchscript_file(const std::string& name);

// The quantizable layer of an imported module: its slots and shape facts; the tensors are the module's.
class ScriptQuantLayer : public torch::nn::Module, public QuantLayer {
 public:
  ScriptQuantLayer(std::string kind, torch::Tensor weight, torch::Tensor bias);
  ~ScriptQuantLayer() override;
  torch::Tensor& weight_param() override { return weight; }
  torch::Tensor weight_param() const override { return weight; }
  const char* kind() const override { return kind_.c_str(); }
  int64_t id() const { return id_; }
  // The operators' bodies.
  torch::Tensor quant_weight(const torch::Tensor& w) { return wq_ ? wq_->forward(w) : w; }
  torch::Tensor quant_act(const torch::Tensor& x);
  void observe(const torch::Tensor& y);
  void pretty_print(std::ostream& stream) const override;

  torch::Tensor weight, bias;

 protected:
  torch::nn::Module& as_module() override { return *this; }

 private:
  std::string kind_;
  int64_t id_;
};

struct TorchScriptExportOptions {
  bool keep_latent = false;  // FP32 latent weights + scale buffers instead of baked quantized weights
};

class TorchScriptModel : public Model {
 public:
  // `label` is what checkpoints and policies record as the model (the path given by the user).
  // cfg: the input shape [in_channels, image_size, image_size] and num_classes (checked by a forward pass).
  // Throws std::runtime_error naming `label` for an unreadable file, no forward method, no quantizable layer
  // (a torch.jit.freeze'd module has none: its weights are constants), or logits of the wrong shape.
  static std::shared_ptr<TorchScriptModel> from_bytes(const std::string& bytes, const std::string& label,
                                                      const ModelConfig& cfg);
  static std::shared_ptr<TorchScriptModel> from_file(const std::string& path, const ModelConfig& cfg);

  torch::Tensor forward(const torch::Tensor& x) override;
  void train(bool on = true) override;

  // The original file's bytes (no inserted operators): checkpoints embed them.
  const std::string& source_bytes() const { return bytes_; }
  // The module as rewritten (calls the autoqnn operators).
  torch::jit::Module& script_module() { return module_; }
  // A fresh copy of the original module with this model's parameters and buffers, in eval mode, that runs
  // with standard ATen operators only (plain torch.jit.load; torchscript_export.cpp). Each quantizable
  // layer's weight is its effective (fake-quantized) weight, or with keep_latent the FP32 latent weight plus
  // its quantizer's scale (and offset) as buffers and the fake-quant written as div / clamp / round / mul
  // ops; each activation quantizer becomes such ops on the layer's input. Fake-quant as ops needs a grid
  // scheme (fixed, uniform, pact): another scheme there throws naming the layer and the scheme.
  torch::jit::Module export_plain(const TorchScriptExportOptions& opt = {});

 private:
  TorchScriptModel(const std::string& label, const ModelConfig& cfg) : Model(label, cfg) {}
  void build(const std::string& bytes);
  std::string bytes_;
  torch::jit::Module module_;
};

}  // namespace autoqnn
