// The trace of the loss Hessian with respect to each quantizable layer's weight, estimated with
// Hutchinson's method (HAWQ-v2): Tr(H_l) = E_v[v_l^T (H v)_l] for Rademacher v (entries +-1) over all
// layers at once; the cross-layer terms of (H v)_l have zero mean, so one Hessian-vector product (a double
// backward through the cross-entropy of a batch) serves every layer. The model runs in eval mode (running
// BatchNorm statistics, no dropout), in float32, without quantizers.
//
// The Fisher estimator (`TraceEstimator::Fisher`) needs no double backward: for softmax cross-entropy the
// Gauss-Newton matrix is the Fisher F = E_x E_{y~p(.|x)}[g g^T], g the gradient of -log p(y|x), so
// Tr(F_l) = E ||g_l||^2, and a network that is piecewise linear in each layer's weight (ReLU, max-pool,
// eval-mode BatchNorm, residual sums) has a layer block of the Hessian EQUAL to its Gauss-Newton block
// (the second derivative of the logits in W_l is zero), so Tr(F_l) = Tr(H_l) there. Per-image squared
// gradient norms come from one backward per draw: for random signs s_i, E_s||sum_i s_i g_i||^2 =
// sum_i ||g_i||^2. One draw (a backward through the kept forward graph) costs a tenth to a thirteenth of a
// Hutchinson draw (a double backward; bench_search BM_HessianTrace, ResNet-20, batch 128) and has a
// smaller variance (docs/benchmarks.md). Elsewhere (sigmoid, GELU,
// attention) Tr(F_l) is the Gauss-Newton part of the trace, a non-negative curvature, not the trace itself.
//
// The Fisher estimator also gives each layer's ACTIVATION trace: Tr of the Hessian of one image's loss in
// that layer's input a (summed over a's elements, averaged over images), from the same backward: an image's
// input affects only its own loss (eval mode), so ||d(sum_i s_i l_i)/da||^2 = sum_i ||dl_i/da_i||^2
// exactly. The network downstream of a is piecewise linear in a, so again Fisher = Hessian there.
//
// It is the cheap sensitivity of `search --method ilp --ilp-proxy hessian|fisher`: a candidate's quality is
// -Tr(H_l) / n_l x ||W_l - Q(W_l)||^2 (HAWQ-v2's Omega), the second-order loss increase of quantizing
// layer l alone, so no evaluation per candidate.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"

namespace autoqnn {

enum class TraceEstimator {
  Hutchinson,  // v^T H v for Rademacher v: a double backward per draw
  Fisher,      // ||g||^2 with labels drawn from the model's softmax: one backward per draw
};

struct HessianTraceOptions {
  TraceEstimator estimator = TraceEstimator::Hutchinson;
  int64_t batches = 0;       // mini-batches of `data` (shuffled by seed), the trace averaged over them;
                             // 0: the estimator's default (Hutchinson 2, Fisher 4)
  int64_t batch_size = 128;
  int64_t samples = 0;       // draws per batch (Rademacher vectors / sign-and-label draws);
                             // 0: the estimator's default (Hutchinson 16, Fisher 8)
  bool act_traces = false;   // Fisher: also the traces in the layers' inputs (a gradient in every input)
  uint64_t seed = 1;         // batch order and the draws (our own generator: the same on every build)
  torch::Device device = torch::kCPU;
};

struct LayerHessianTrace {
  std::string layer;      // quant_layers name
  int64_t params = 0;     // n_l
  double trace = 0;       // the estimate of Tr(H_l) (sum over the layer's n_l weights)
  double std_error = 0;   // standard error of that mean over the batches x samples draws
  double act_trace = NAN; // Fisher with act_traces: Tr of the per-image Hessian in the layer's input, else NaN
  double act_std_error = NAN;
  int64_t act_numel = 0;  // elements of one image's input to the layer
  int64_t draws = 0;      // batches x samples actually drawn
  int64_t images = 0;     // images in those batches
};

// "hutchinson" | "fisher"
const char* trace_estimator_name(TraceEstimator e);

// In quant_layers order. Throws std::invalid_argument for empty data, batches / samples < 0, or a model
// with quantizers installed.
std::vector<LayerHessianTrace> hessian_traces(Model& model, const TensorDataset& data, const HessianTraceOptions& opt);

}  // namespace autoqnn
