// Building a model from a checkpoint: the one place that knows how FP32, quantized and search-state
// checkpoints map back onto a zoo model with its quantizers installed.
#pragma once
#include <string>

#include "autoqnn/checkpoint.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"

namespace autoqnn {

struct LoadedModel {
  ModelPtr model;
  CheckpointMeta meta;
  bool has_policy = false;
  Policy policy;  // the policy installed (given one wins over the checkpoint's)
};

// Reads `checkpoint`, checks that it holds `model_name` (empty = accept the checkpoint's model) and the
// input config `cfg` (dataset shape), builds the model, installs `policy_path` (when given) or the
// checkpoint's recorded policy, then loads every parameter/buffer. A given policy on an FP32 checkpoint is
// the convert path: weights load first, then quantizers are installed (their parameters keep their
// initial values). Errors name the file and what does not match.
LoadedModel load_model(const std::string& checkpoint, const std::string& model_name, const ModelConfig& cfg,
                       const std::string& policy_path = "");

}  // namespace autoqnn
