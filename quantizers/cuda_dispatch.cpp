#include "quantizers/cuda_dispatch.h"

#include <stdexcept>
#include <string>

#ifdef AUTOQNN_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "quantizers/cuda/kernels.h"
#include "quantizers/fq_common.h"
#endif

namespace autoqnn::quant::cudak {

bool compiled() {
#ifdef AUTOQNN_WITH_CUDA_KERNELS
  return torch::cuda::is_available();
#else
  return false;
#endif
}

bool usable(const torch::Tensor& x) {
#ifdef AUTOQNN_WITH_CUDA_KERNELS
  const auto t = x.scalar_type();
  return x.is_cuda() && x.numel() > 0 && x.layout() == torch::kStrided &&
         (t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16);
#else
  (void)x;
  return false;
#endif
}

#ifdef AUTOQNN_WITH_CUDA_KERNELS
namespace {
// [C] float32 contiguous on x's device (a [] statistic broadcast to C == 1).
torch::Tensor chan(const torch::Tensor& t, const torch::Tensor& x) {
  return t.detach().to(x.device(), torch::kFloat32).contiguous().reshape({-1});
}
const float* ptr(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }
void check(int err, const char* what) {
  if (err != 0) throw std::runtime_error(std::string("CUDA kernel ") + what + " failed: error " + std::to_string(err));
}
}  // namespace

std::pair<torch::Tensor, torch::Tensor> affine(const torch::Tensor& x, int64_t axis, const AffineGrid& g,
                                               const torch::Tensor& s, const torch::Tensor& off,
                                               const torch::Tensor& xlo, const torch::Tensor& xhi, bool want_mask) {
  TORCH_CHECK(x.is_contiguous() && g.valid(), "cudak::affine: contiguous input and a valid grid required");
  c10::cuda::CUDAGuard guard(x.device());
  cuda::AffineArgs a;
  a.mode = g.mode == 1 ? cuda::AffineArgs::kThreshold : cuda::AffineArgs::kGrid;
  const auto L = fq::layout_of(x.sizes(), axis);
  a.shape = {L.outer, L.C, L.inner};
  auto ta = chan(g.a, x), ts = chan(s, x);
  torch::Tensor to = g.o.defined() ? chan(g.o, x) : torch::Tensor();
  torch::Tensor toff = off.defined() ? chan(off, x) : torch::Tensor();
  torch::Tensor tlo, thi;
  auto out = torch::empty_like(x);
  torch::Tensor mask;
  if (want_mask) {
    mask = torch::empty(x.sizes(), x.options().dtype(torch::kBool));
    tlo = chan(xlo, x);
    thi = chan(xhi, x);
  }
  a.x = x.data_ptr();
  a.out = out.data_ptr();
  a.mask = want_mask ? mask.data_ptr<bool>() : nullptr;
  a.dtype = x.scalar_type() == torch::kFloat16 ? cuda::DType::kFloat16
            : x.scalar_type() == torch::kBFloat16 ? cuda::DType::kBFloat16
                                                  : cuda::DType::kFloat32;
  a.a = ptr(ta);
  a.o = ptr(to);
  a.s = ptr(ts);
  a.off = ptr(toff);
  a.xlo = ptr(tlo);
  a.xhi = ptr(thi);
  a.shift = g.shift;
  a.lo = g.lo;
  a.hi = g.hi;
  a.post = g.post;
  a.stream = c10::cuda::getCurrentCUDAStream().stream();
  check(cuda::affine_fake_quant(a), "affine_fake_quant");
  return {out, mask};
}
#else
std::pair<torch::Tensor, torch::Tensor> affine(const torch::Tensor&, int64_t, const AffineGrid&, const torch::Tensor&,
                                               const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, bool) {
  throw std::logic_error("cudak::affine: built without CUDA kernels");
}
#endif

}  // namespace autoqnn::quant::cudak
