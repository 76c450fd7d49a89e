// Per-layer quantization sensitivity (autoqnn analyze, docs/ptq.md): for every layer and every candidate
// (weight spec x act spec) of that layer, with ONLY that layer quantized:
//   mse     = mean (W - Q(W))^2 of the weight (0 for fp32)
//   sqnr_db = 10 log10(sum W^2 / sum (W - Q(W))^2)  (inf when exact)
//   afp_distance = the CDF-based symmetric KL of afp_search.h between |W| and |Q(W)|
//   top1, drop = top1(FP32) - top1 (after calibrating the layer's quantizers on the calibration batches)
//   act_mse = mean (a - Q(a))^2 of the layer's input on one calibration batch, the act quantizer calibrated
//             alone (0 for fp32); measured only without accuracy (not in the CSV)
// Without accuracy the weight error is computed once per (layer, weight spec) and the act error once per
// (layer, act spec), so a joint W x A space costs W + A fits per layer, not W x A.
// The table (CSV) is what `search --init-from-sensitivity` reads.
#pragma once
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "quantizers/spec.h"

namespace autoqnn::ptq {

struct SensitivityRow {
  std::string layer;
  int64_t index = 0;  // layer position in forward order
  std::string weight, act;
  int64_t weight_bytes = 0;
  double mse = 0, sqnr_db = 0, afp_distance = 0;
  double top1 = 0, drop = 0;
  double act_mse = 0;
};

struct SensitivityOptions {
  int64_t calib_batches = 4;
  int64_t batch_size = 128;
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;
  bool accuracy = true;  // false: weight and act errors only (no evaluation)
};

// candidates[i] = the (weight, act) pairs of layer i (quant_layers order). `model`: FP32, no quantizers;
// left without quantizers on return. Logs progress to stderr.
std::vector<SensitivityRow> analyze_sensitivity(
    Model& model, const std::vector<std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>>>& candidates,
    const TensorDataset& calib, const TensorDataset& test, const SensitivityOptions& opt, double* fp_top1 = nullptr);

std::string sensitivity_csv(const std::vector<SensitivityRow>& rows);
std::vector<SensitivityRow> parse_sensitivity_csv(const std::string& text, const std::string& source);
std::string sensitivity_table(const std::vector<SensitivityRow>& rows, double fp_top1);

}  // namespace autoqnn::ptq
