// Checkpoints: a LibTorch archive holding every parameter and buffer by dotted name, plus a JSON
// metadata record (model, input config, policy, training position). Loading validates names and shapes.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "autoqnn/model.h"

namespace autoqnn {

struct CheckpointMeta {
  std::string kind = "fp32";     // fp32 | quantized | search-state | adabits
  std::string model;             // zoo name
  ModelConfig config;
  std::string dataset;           // what it was trained on
  nlohmann::json policy;         // null for FP32 checkpoints; the policy JSON for quantized ones
  int64_t epoch = 0;             // completed epochs (resume position)
  nlohmann::json extra;          // verb-specific state (schedules, search state, metrics)
  nlohmann::json to_json() const;
  static CheckpointMeta from_json(const nlohmann::json& j, const std::string& path);
};

// Atomic. `optimizer` (optional) is stored under "optimizer/..." for --resume.
void save_checkpoint(const std::string& path, torch::nn::Module& model, const CheckpointMeta& meta,
                     torch::optim::Optimizer* optimizer = nullptr);
// A TorchScript file (torchscript_model.h) reads as an FP32 checkpoint of itself: model = the path, config
// zeros (= the caller's input config), weights = the module's own.
// The original TorchScript file embedded in a checkpoint of an imported model ("" for a zoo model's).
std::string read_checkpoint_torchscript(const std::string& path);
// Reads only the metadata. Throws std::runtime_error naming the file when missing/corrupt/not ours.
CheckpointMeta read_checkpoint_meta(const std::string& path);
// Copies every parameter and buffer of `model` from the file. Throws naming the file and the key when
// a key is missing or its shape differs (a checkpoint of another model / policy).
void load_checkpoint_weights(const std::string& path, torch::nn::Module& model);
// Loads the optimizer state saved with the checkpoint; returns false when none was saved.
bool load_checkpoint_optimizer(const std::string& path, torch::optim::Optimizer& optimizer);

}  // namespace autoqnn
