// The trace of the loss Hessian with respect to each quantizable layer's weight, estimated with
// Hutchinson's method (HAWQ-v2): Tr(H_l) = E_v[v_l^T (H v)_l] for Rademacher v (entries +-1) over all
// layers at once; the cross-layer terms of (H v)_l have zero mean, so one Hessian-vector product (a double
// backward through the cross-entropy of a batch) serves every layer. The model runs in eval mode (running
// BatchNorm statistics, no dropout), in float32, without quantizers.
//
// It is the cheap sensitivity of `search --method ilp --ilp-proxy hessian`: a candidate's quality is
// -Tr(H_l) / n_l x ||W_l - Q(W_l)||^2 (HAWQ-v2's Omega), the second-order loss increase of quantizing
// layer l alone, so no evaluation per candidate.
#pragma once
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"

namespace autoqnn {

struct HessianTraceOptions {
  int64_t batches = 2;       // mini-batches of `data` (shuffled by seed), the trace averaged over them
  int64_t batch_size = 128;
  int64_t samples = 16;      // Rademacher vectors per batch
  uint64_t seed = 1;         // batch order and the Rademacher draws
  torch::Device device = torch::kCPU;
};

struct LayerHessianTrace {
  std::string layer;      // quant_layers name
  int64_t params = 0;     // n_l
  double trace = 0;       // the estimate of Tr(H_l) (sum over the layer's n_l weights)
  double std_error = 0;     // standard error of that mean over the batches x samples draws
};

// In quant_layers order. Throws std::invalid_argument for empty data, batches / samples < 1, or a model
// with quantizers installed.
std::vector<LayerHessianTrace> hessian_traces(Model& model, const TensorDataset& data, const HessianTraceOptions& opt);

}  // namespace autoqnn
