// Fused CUDA fake-quantisation kernels (see kernels.h). Grid-stride loops over the flat tensor; the channel
// of element i is (i / inner) % C. Memory-bound by design: one read of x, one write of out (+ mask).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "quantizers/cuda/kernels.h"

namespace autoqnn::quant::cuda {
namespace {

template <class T> __device__ __forceinline__ float load(const T* p, int64_t i);
template <> __device__ __forceinline__ float load<float>(const float* p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ float load<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }
template <> __device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
template <class T> __device__ __forceinline__ void store(T* p, int64_t i, float v);
template <> __device__ __forceinline__ void store<float>(float* p, int64_t i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void store<__half>(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
template <> __device__ __forceinline__ void store<__nv_bfloat16>(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

__device__ __forceinline__ int64_t channel_of(int64_t i, const Shape& s) {
  return s.C == 1 ? 0 : (i / s.inner) % s.C;
}
// clamp with the CPU's NaN behaviour (v < lo ? lo : v, then v > hi ? hi : v)
__device__ __forceinline__ float clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

template <class T, int MODE>
__global__ void affine_kernel(AffineArgs a, int64_t n) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const int64_t c = channel_of(i, a.shape);
    const float v = load<T>(x, i);
    float q;
    if (MODE == AffineArgs::kThreshold) {
      const float d = a.a[c];
      q = (v > d ? 1.f : 0.f) - (v < -d ? 1.f : 0.f);
    } else {
      float y = a.o ? __fsub_rn(v, a.o[c]) : v;
      y = __fdiv_rn(y, a.a[c]);
      if (a.shift != 0.f) y = __fadd_rn(y, a.shift);
      q = __fadd_rn(rintf(clampf(y, a.lo, a.hi)), a.post);
    }
    if (a.qn) a.qn[i] = q;
    if (out) {
      float r = __fmul_rn(q, a.s[c]);  // no contraction into an fma: two roundings, as on the CPU
      if (a.off && a.add_offset) r = __fadd_rn(r, a.off[c]);
      store<T>(out, i, r);
    }
    if (a.mask) a.mask[i] = (v >= a.xlo[c]) & (v <= a.xhi[c]);
  }
}

__global__ void table_kernel(TableArgs a, int64_t n) {
  extern __shared__ float sm[];  // levels[P], bounds[P - 1]
  float* lv = sm;
  float* bd = sm + a.P;
  for (int k = threadIdx.x; k < a.P; k += blockDim.x) lv[k] = a.levels ? a.levels[k] : 0.f;
  for (int k = threadIdx.x; k < a.P - 1; k += blockDim.x) bd[k] = a.bounds[k];
  __syncthreads();
  int bad = 0;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const int64_t c = channel_of(i, a.shape);
    const float v0 = a.x[i];
    bad |= !isfinite(v0);
    float t = v0;
    if (a.sub) t = __fsub_rn(t, a.sub[c]);
    if (a.div) t = __fdiv_rn(t, a.div[c]);
    if (a.has_alpha) t = __fdiv_rn(t, a.alpha);
    const float xn = a.clamp ? clampf(t, a.clo, a.chi) : t;
    float q;
    int code;
    if (a.half_grid) {
      const float w = clampf(xn, a.glo, a.ghi + 0.5f);
      const float f = floorf(w);
      code = static_cast<int>(f) - static_cast<int>(a.glo);
      q = f + 0.5f;
    } else {
      int k = 0;
      for (int step = a.P >> 1; step > 0; step >>= 1) k += (bd[k + step - 1] < xn) ? step : 0;
      code = k;
      q = lv[k];
    }
    if (a.codes) a.codes[i] = code;
    if (a.out) {
      float r = __fmul_rn(q, a.scale[c]);
      if (a.off && a.add_offset) r = __fadd_rn(r, a.off[c]);
      a.out[i] = r;
    }
    if (a.mask) a.mask[i] = (t >= a.mlo) & (t <= a.mhi);
    if (a.da) {
      const float df = a.dfac ? a.dfac[c] : 1.f;
      a.da[i] = df * ((t >= a.clo && t <= a.chi) ? q - xn : q);
    }
  }
  if (bad && a.nonfinite) atomicOr(a.nonfinite, 1);
}

int grid_for(int64_t n, int threads) {
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t want = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sms) * 16;  // enough blocks in flight to hide latency
  return static_cast<int>(want < cap ? (want > 0 ? want : 1) : cap);
}

}  // namespace

int affine_fake_quant(const AffineArgs& a) {
  const int64_t n = a.shape.outer * a.shape.C * a.shape.inner;
  if (n == 0) return 0;
  constexpr int kThreads = 256;
  const int blocks = grid_for(n, kThreads);
  auto st = static_cast<cudaStream_t>(a.stream);
  const bool thr = a.mode == AffineArgs::kThreshold;
  switch (a.dtype) {
    case DType::kFloat32:
      if (thr) affine_kernel<float, AffineArgs::kThreshold><<<blocks, kThreads, 0, st>>>(a, n);
      else affine_kernel<float, AffineArgs::kGrid><<<blocks, kThreads, 0, st>>>(a, n);
      break;
    case DType::kFloat16:
      if (thr) affine_kernel<__half, AffineArgs::kThreshold><<<blocks, kThreads, 0, st>>>(a, n);
      else affine_kernel<__half, AffineArgs::kGrid><<<blocks, kThreads, 0, st>>>(a, n);
      break;
    case DType::kBFloat16:
      if (thr) affine_kernel<__nv_bfloat16, AffineArgs::kThreshold><<<blocks, kThreads, 0, st>>>(a, n);
      else affine_kernel<__nv_bfloat16, AffineArgs::kGrid><<<blocks, kThreads, 0, st>>>(a, n);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

int table_fake_quant(const TableArgs& a) {
  const int64_t n = a.shape.outer * a.shape.C * a.shape.inner;
  if (n == 0) return 0;
  if (a.P < 1 || a.P > 1024 || (a.P & (a.P - 1))) return static_cast<int>(cudaErrorInvalidValue);
  constexpr int kThreads = 256;
  const int blocks = grid_for(n, kThreads);
  const size_t smem = sizeof(float) * (2 * a.P);
  table_kernel<<<blocks, kThreads, smem, static_cast<cudaStream_t>(a.stream)>>>(a, n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace autoqnn::quant::cuda
