// Runs an ONNX file in ONNX Runtime through the Node script scripts/ort/run_onnx.js (npm onnxruntime-node,
// installed by scripts/install-ort.sh) and compares its logits with ours (export --format onnx --verify).
#pragma once
#include <torch/torch.h>

#include <string>

namespace autoqnn {

// The runner script: $AUTOQNN_ORT_RUNNER, else scripts/ort/run_onnx.js found like a data file
// (data_files.h). "" with `why` set when it, node, or its node_modules/onnxruntime-node is missing.
std::string find_ort_runner(std::string* why = nullptr);

// Logits [N, K] of `onnx_path` on images [N, C, H, W] (float32). Throws std::runtime_error naming what is
// missing or what failed (the runner's exit status).
// optimize: ONNX Runtime's default graph optimizations (what a deployment runs: QDQ pairs fused into integer
// kernels); false: every node as written with float kernels (the graph's exact semantics).
torch::Tensor run_onnx_in_ort(const std::string& onnx_path, const torch::Tensor& images, int64_t batch = 256,
                              bool optimize = true);

struct LogitsComparison {
  int64_t n = 0;
  double max_abs_diff = 0;   // max |ours - ort| over all logits
  double tolerance = 0;      // the allowed max |diff|
  double top1_ours = 0, top1_ort = 0;  // fractions
  int64_t argmax_diffs = 0;  // images whose predicted class differs
  bool ok = false;           // max_abs_diff <= tolerance and |top1_ours - top1_ort| <= 0.0005 (0.05 points)
};
LogitsComparison compare_logits(const torch::Tensor& ours, const torch::Tensor& ort, const torch::Tensor& labels,
                                double tolerance);

}  // namespace autoqnn
