// convert: install a policy's quantizers into an FP32 model and calibrate their data-dependent state, and
// the quantized checkpoint that records the policy (autoqnn convert / finetune).
#pragma once
#include <torch/torch.h>

#include <string>

#include "autoqnn/checkpoint.h"
#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"

namespace autoqnn {

struct CalibOptions {
  int64_t batches = 8;        // mini-batches of calibration data (0 = weight quantizers only)
  int64_t batch_size = 128;
  uint64_t seed = 1;          // batch order (shuffled, deterministic)
  torch::Device device = torch::kCPU;
};

struct CalibStats {
  int64_t batches = 0, images = 0;
  int64_t weight_quantizers = 0, act_quantizers = 0;
};

// Data-dependent initialisation of the installed quantizers:
//  - every weight quantizer gets calibrate(weight) once;
//  - `opt.batches` mini-batches of `data` run through the model under NoGradGuard with only the
//    quantizers in train mode (activation quantizers see calibrate(input) and then update their running
//    statistics); every other module (BatchNorm, dropout) stays in eval mode, so BN running statistics
//    are left exactly as they were.
// Module training flags are restored afterwards.
CalibStats calibrate_model(Model& model, const TensorDataset& data, const CalibOptions& opt);
// "calibrated 5 weight quantizers and 3 activation quantizers on 1024 images" (no images when the policy
// quantizes no activations: weight quantizers need no data).
std::string calib_summary(const CalibStats& st);

// apply_policy + calibrate_model (data may be null: weight quantizers only).
CalibStats convert_model(Model& model, const Policy& policy, const TensorDataset* data, const CalibOptions& opt);

// Metadata of a quantized checkpoint: kind "quantized", the model and its input config, the policy JSON.
CheckpointMeta quantized_meta(const Model& model, const Policy& policy, const std::string& dataset,
                              int64_t epoch = 0);

}  // namespace autoqnn
