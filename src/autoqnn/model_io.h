// Building a model from a checkpoint: the one place that knows how FP32, quantized and search-state
// checkpoints map back onto a zoo model with its quantizers installed.
#pragma once
#include <string>
#include <vector>

#include "autoqnn/checkpoint.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"

namespace autoqnn {

struct LoadedModel {
  ModelPtr model;
  CheckpointMeta meta;
  bool has_policy = false;
  Policy policy;  // the policy installed (given one wins over the checkpoint's)
  // AdaBits checkpoints (kind "adabits"): the switchable model's bit list and the bitwidth selected by
  // `bits` (0 when a policy selected per-layer bitwidths). Empty / 0 for every other checkpoint.
  std::vector<int> switch_bits;
  int active_bits = 0;
};

// Reads `checkpoint`, checks that it holds `model_name` (empty = accept the checkpoint's model) and the
// input config `cfg` (dataset shape), builds the model, installs `policy_path` (when given) or the
// checkpoint's recorded policy, then loads every parameter/buffer. A given policy on an FP32 checkpoint is
// the convert path: weights load first, then quantizers are installed (their parameters keep their
// initial values). Errors name the file and what does not match.
// An AdaBits checkpoint (adabits.h) is rebuilt switchable and run at `bits` (a listed bitwidth; `policy` then
// describes that mode) or per layer as `policy_path` selects; it needs one of the two. `bits` on any other
// checkpoint is an error.
LoadedModel load_model(const std::string& checkpoint, const std::string& model_name, const ModelConfig& cfg,
                       const std::string& policy_path = "", int bits = 0);

}  // namespace autoqnn
