// Post-training quantization without finetuning (autoqnn ptq, docs/ptq.md): the methods of Banner et al.
// 2019 on top of an ordinary policy + quantized checkpoint:
//   BN folding (bn_fold.h) -> uniform policy -> activation statistics (act_stats.h) -> per-channel bit
//   allocation of weights / activations (bit_allocation.h; policy channel_bits / act_channel_bits) ->
//   bias correction (bias_correction.h; policy bias_correction) -> install + calibrate (convert.h) ->
//   ACIQ clipping of the activation quantizers' ranges (aciq.h).
// Every step is optional; with none the result is the naive min-max PTQ of `autoqnn convert`.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"

namespace autoqnn::ptq {

struct PtqOptions {
  quant::QuantSpec weight = quant::QuantSpec::parse("uniform:4:per_channel");
  quant::QuantSpec act = quant::QuantSpec::parse("uniform:4:asym");
  int keep_first_last = 0;        // > 0: first / last layer at fixed:<n> (see uniform_policy)
  std::string aciq;               // "" (min-max running range) | laplace | gauss
  // With ACIQ: per layer, keep the ACIQ clip only where it lowers the layer's OUTPUT error (mean squared
  // difference to the layer with float input, on a probe of calib rows) below the min-max range's; the
  // analytical clip assumes a Laplace/Gauss input and ignores which channels the weights amplify.
  bool aciq_guard = true;
  int64_t guard_rows = 64;
  bool alloc_weights = false;     // per-output-channel bit allocation of weights
  bool alloc_acts = false;        // per-input-channel bit allocation of activations
  int max_channel_bits = 8;       // upper clamp of the allocation
  std::string bias_correction;    // "" | mean | mean+var
  bool fold_bn = false;
  int64_t calib_batches = 8;
  int64_t batch_size = 128;
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;
};
// Checks the combination (ACIQ needs a uniform activation spec, allocation needs quantized tensors, ...).
// Throws std::invalid_argument naming the option.
void validate(const PtqOptions& o);
// "weights" / "acts" / "weights,acts" -> (alloc_weights, alloc_acts); throws naming a bad item.
std::pair<bool, bool> parse_bit_alloc(const std::string& s);

struct PtqResult {
  Policy policy;                                            // also installed in the model
  std::vector<std::pair<std::string, std::string>> folded;  // (conv, bn)
  nlohmann::json layers = nlohmann::json::object();         // per layer: clip, one_sided, bits histogram
};

// `model` holds FP32 weights and no quantizers. On return its quantizers are installed and calibrated
// (and its BN folded when asked). `calib`: the calibration images (training split).
PtqResult run_ptq(Model& model, const TensorDataset& calib, const PtqOptions& o);

}  // namespace autoqnn::ptq
