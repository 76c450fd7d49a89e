// Fused CUDA fake-quantisation kernels (forward; the STE / PWL_C backward is the identity or one masked
// copy done by the caller). Plain CUDA C++ behind a pointer interface: no LibTorch headers here, so the .cu
// files compile with a bare nvcc; quantizers/cuda_dispatch.cpp adapts tensors to these calls.
//
// Both kernels read x once and write out once (+ a 1-byte mask when asked): the minimum traffic of a
// fake-quantiser. The arithmetic is the CPU fused path's, operation for operation, in float32 with IEEE
// division and round-half-even, so results agree with the CPU bit for bit for float32 inputs.
#pragma once
#include <cstdint>

namespace autoqnn::quant::cuda {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// x seen as [outer, C, inner] around the channel axis (per tensor: C == 1).
struct Shape {
  int64_t outer = 1, C = 1, inner = 1;
};

// The affine family: qn = rne(clamp((x - o_c) / a_c + shift, lo, hi)) + post   (kGrid)
//                    qn = (x > a_c) - (x < -a_c)                               (kThreshold: ternary)
//                    out = qn * s_c (+ off_c);  mask = xlo_c <= x <= xhi_c
// Per-channel arrays are device pointers of length C (o, off, mask bounds may be null when unused).
struct AffineArgs {
  enum Mode : int { kGrid = 0, kThreshold = 1 } mode = kGrid;
  const void* x = nullptr;
  void* out = nullptr;   // same dtype as x; may be null (codes only)
  bool* mask = nullptr;  // optional
  float* qn = nullptr;   // optional float32 normalised levels (encode)
  DType dtype = DType::kFloat32;
  Shape shape;
  const float *a = nullptr, *o = nullptr, *s = nullptr, *off = nullptr, *xlo = nullptr, *xhi = nullptr;
  float shift = 0.f, lo = 0.f, hi = 0.f, post = 0.f;
  bool add_offset = true;  // false: the caller adds off (keeps q * s and + off two roundings, as on CPU)
  void* stream = nullptr;  // cudaStream_t
};
// Returns 0 or the cudaError_t of the launch.
int affine_fake_quant(const AffineArgs& a);

// The power-of-two / table family (pot, esb, apot, afp):
//   t  = ((x - sub_c) / div_c) / alpha      (each step optional)
//   xn = clamp(t, clo, chi)                 (optional)
//   half grid: f = floor(clamp(xn, glo, ghi + 0.5)), qn = f + 0.5, code = f - glo
//   table:     code = #{boundaries < xn} (sorted boundaries, +inf padded to P - 1), qn = levels[code]
//   out = qn * scale_c (+ off_c);  mask = mlo <= t' <= mhi (t' = xn when clamped, else t);
//   da = d out / d alpha (learned alpha: (qn - xn * in_range) * dfac_c) when asked.
struct TableArgs {
  const float* x = nullptr;  // float32 only
  float* out = nullptr;
  bool* mask = nullptr;
  float* da = nullptr;
  int64_t* codes = nullptr;
  Shape shape;
  const float *sub = nullptr, *div = nullptr, *scale = nullptr, *off = nullptr, *dfac = nullptr;
  bool has_alpha = false;
  float alpha = 1.f;
  bool clamp = false;
  float clo = 0.f, chi = 0.f;
  bool half_grid = false;
  float glo = 0.f, ghi = 0.f;
  const float* levels = nullptr;  // device, P entries (host-padded)
  const float* bounds = nullptr;  // device, P - 1 entries (+inf padded)
  int P = 1;                      // power of two, <= 1024
  float mlo = 0.f, mhi = 0.f;
  bool add_offset = true;
  int* nonfinite = nullptr;       // device int set to 1 when an input is NaN / inf (optional)
  void* stream = nullptr;
};
int table_fake_quant(const TableArgs& a);

}  // namespace autoqnn::quant::cuda
