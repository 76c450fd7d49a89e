// ONNX Runtime check of an exported ONNX file against our own evaluation (model.forward in eval mode).
#pragma once
#include <string>

#include "autoqnn/data.h"
#include "autoqnn/onnx/onnx_export.h"
#include "autoqnn/ort_runner.h"

namespace autoqnn {

// The allowed max |logit difference|: 1e-4 for weight-only exports (float rounding: BN folding, kernel
// order); with activation QDQ one output quantization step, step * max_o sum_i |W[o, i]| of the last
// layer (its input moving by one step everywhere: a rounding tie / edge resolved the other way upstream).
double onnx_logit_tolerance(Model& model, const ModelGraph& graph, const OnnxExportReport& rep, std::string* rule = nullptr);

struct OnnxVerifyResult {
  // ONNX Runtime with graph optimizations off (every node as written, float kernels): the graph's exact
  // semantics; max |diff| <= onnx_logit_tolerance (1e-4 weight-only, one output step with activation QDQ)
  // and top-1 within 0.05 points.
  LogitsComparison exact;
  // ONNX Runtime as deployed (default optimizations: QDQ fused into integer kernels): max |diff| within
  // onnx_logit_tolerance; top-1 within 0.05 points required for weight-only exports, reported otherwise
  // (an integer kernel resolves rounding ties of the next activation quantizer differently).
  LogitsComparison deployed;
  std::string rule;  // how the deployed tolerance was set
  bool ok = false;
};
// Runs `onnx_path` in ONNX Runtime (both ways) on data.images and compares with model.forward.
OnnxVerifyResult verify_onnx(Model& model, const ModelGraph& graph, const OnnxExportReport& rep,
                             const std::string& onnx_path, const TensorDataset& data, int64_t batch = 256);

}  // namespace autoqnn
