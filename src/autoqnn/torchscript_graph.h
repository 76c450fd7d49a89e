// Graph helpers shared by the TorchScript import (torchscript_model.cpp) and its export
// (torchscript_export.cpp); internal to the core library.
#pragma once
#include <torch/csrc/jit/ir/ir.h>

#include <string>

namespace autoqnn::detail {

// True when `v` is self.<path>.weight (a chain of prim::GetAttr from the graph's `self`); `path` is then the
// owner's module path ("layer1.0.conv1").
bool weight_path(torch::jit::Value* v, torch::jit::Value* self, std::string& path);
// Inlines every prim::CallMethod / CallFunction, repeatedly: with graph-executor optimisation off one
// Inline pass goes one level deep.
void inline_all(torch::jit::Graph& g);

}  // namespace autoqnn::detail
