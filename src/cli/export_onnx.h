// `autoqnn export --format onnx`: the ONNX half of the export verb (cmd_export.cpp).
#pragma once
#include <string>

#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "cli.h"

namespace autoqnn::cli {

// Writes `out` (ONNX), with `verify` first runs it in ONNX Runtime on the test set (the first
// `verify_images` images when > 0) against model.forward; a failed check removes the file and throws.
int export_onnx_verb(const CommonOptions& c, Model& model, const Policy& policy, const std::string& out, bool verify,
                     int64_t verify_images, bool json);

}  // namespace autoqnn::cli
