// ONNX export: a quantized model (its ModelGraph, quantizers installed per a policy) as an ONNX model
// (opset 13, IR 8) that ONNX Runtime runs. BatchNorm is folded into the preceding conv; weights keep the
// policy's quantization: affine grids as int8 / uint8 (int32 above 8 bits) initializers + DequantizeLinear
// (per tensor or per channel, axis 0), level tables as uint8 codes -> Cast -> Gather(table) -> Mul(scale)
// (-> Add(offset)); quantized activations as Clip -> QuantizeLinear -> DequantizeLinear with the calibrated
// scale / zero point. Validated with the ONNX checker and strict shape inference, written atomically.
// Layout and what each form preserves: docs/export.md. This library is the only code linking libonnx.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "autoqnn/model_graph.h"
#include "autoqnn/policy.h"

namespace autoqnn {

struct OnnxExportOptions {
  int64_t opset = 13;          // 13..17 (Debian's ONNX 1.12)
  bool fold_batchnorm = true;  // conv -> bn folded into the conv's weight scale and bias
};

struct OnnxLayerReport {
  std::string name, spec;       // the weight spec ("fp32" for float layers)
  std::string weight_form;      // "int8 DequantizeLinear per-channel", "uint8 codes + Gather(16 levels)", "float32", ...
  std::string act_form;         // "" (float input) or "QDQ uint8 scale=... zero_point=..."
  double act_scale = 0;         // the input's quantization step (0: float input)
  int64_t onnx_weight_bytes = 0;  // the initializers that make up the weight (codes, scales, zero points, tables, ...)
  int64_t policy_bytes = 0;       // the policy's packed bytes (bit-packed codes + dequantisation data)
};

struct OnnxExportReport {
  std::vector<OnnxLayerReport> layers;
  int64_t onnx_weight_bytes = 0;    // sum over layers
  int64_t policy_weight_bytes = 0;  // the policy's totals.weight_bytes
  int64_t other_bytes = 0;          // biases (BN folded in), activation scales, shape constants
  int64_t file_bytes = 0;
  int64_t nodes = 0, act_qdq = 0;   // act_qdq: quantized activation inputs
  bool weight_only() const { return act_qdq == 0; }
};

// Builds, checks (checker + strict shape inference) and writes `path` (temp file + rename). `policy`
// gives each layer's spec and packed bytes and must match the installed quantizers. Throws
// std::runtime_error naming the layer and scheme for what ONNX cannot express (non-uniform activation
// schemes, codes wider than 8 bits off an integer grid, per-channel bits / bias correction, ...).
OnnxExportReport export_onnx(Model& model, const ModelGraph& graph, const Policy& policy, const std::string& path,
                             const OnnxExportOptions& options = {});

}  // namespace autoqnn
