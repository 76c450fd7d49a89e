// Tensor-level entry points of the fused CUDA kernels (quantizers/cuda/). Compiled in every build: without
// CUDA kernels (CPU LibTorch, AUTOQNN_CUDA_KERNELS=OFF) available() is false and callers keep their
// composite tensor-op path, which computes the same function.
#pragma once
#include <torch/torch.h>

#include <utility>

namespace autoqnn::quant::cudak {

// True when the build has the kernels and LibTorch sees a GPU.
bool compiled();
// x is a non-empty CUDA float32/float16/bfloat16 tensor and the kernels are compiled. Whether a quantizer
// uses them is its own fused() option (Quantizer::set_fused; off = the composite ATen path): there is no
// process-wide switch.
bool usable(const torch::Tensor& x);

// The affine family's level function (see cuda/kernels.h): a, o are [] or [C] float32 tensors on x's device
// (o may be undefined). mode < 0: not expressible (the scheme keeps its composite path).
struct AffineGrid {
  int mode = -1;  // 0: grid, 1: threshold (ternary)
  torch::Tensor a, o;
  float shift = 0.f, lo = 0.f, hi = 0.f, post = 0.f;
  bool valid() const { return mode >= 0; }
};

// {out, mask}: out = qn * s (+ off) in x's dtype; mask (bool, only when want_mask) = xlo <= x <= xhi.
// x: CUDA, contiguous; axis: channel axis of the per-channel statistics (-1 per tensor).
std::pair<torch::Tensor, torch::Tensor> affine(const torch::Tensor& x, int64_t axis, const AffineGrid& g,
                                               const torch::Tensor& s, const torch::Tensor& off,
                                               const torch::Tensor& xlo, const torch::Tensor& xhi, bool want_mask);

}  // namespace autoqnn::quant::cudak
