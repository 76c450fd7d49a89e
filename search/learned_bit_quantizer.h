// QPL's layer-slot quantizer: one quantization scheme (a quant::Quantizer) whose bitwidth is a continuous,
// learned value b in [v_0, v_{n-1}], where v_0 < v_1 < ... < v_{n-1} are the bitwidths valid for the scheme
// inside the configured range (registry valid_bits).
//
//   b = v_0 + (v_{n-1} - v_0) * sigmoid(s)                 s: the unconstrained parameter ("bit_logit")
//   segment i with v_i <= b <= v_{i+1},   f = (b - v_i) / (v_{i+1} - v_i)
//   Q_b(x) = (1 - f) * Q_{v_i}(x) + f * Q_{v_{i+1}}(x)     (fractional-bit interpolation)
//
// so dQ/db = (Q_{v_{i+1}}(x) - Q_{v_i}(x)) / (v_{i+1} - v_i): the gradient w.r.t. b is the direction from the
// coarser to the finer quantization, and a loss that falls as the quantization error falls gets a negative
// gradient w.r.t. b (more bits). Any cost c(v) known at the valid bitwidths is made continuous in b the same
// way: c(b) = (1 - f) c(v_i) + f c(v_{i+1}) (interp_weights), exact at every valid bitwidth.
// The gradient w.r.t. x is the scheme's own (STE / PWL), mixed by the same weights.
//
// Modes: Continuous (search steps; `bit_grad` false detaches s, e.g. for weight steps) or Fixed (one valid
// bitwidth: validation of the rounded architecture, the derived policy). A scheme with a single valid
// bitwidth in range has no parameter and is always Fixed.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "quantizers/quantizer.h"

namespace autoqnn::search {

class LearnedBitQuantizer : public quant::FakeQuantizer {
 public:
  // `q` is an instance of the scheme (any valid bitwidth); `bits` the valid bitwidths (non-empty, strictly
  // increasing, each valid for q's scheme); `init_bits` the starting b, clamped into the open range.
  LearnedBitQuantizer(quant::QuantizerPtr q, std::vector<int> bits, double init_bits);

  torch::Tensor forward(const torch::Tensor& x) override;
  std::string describe() const override;  // "vecq:b=3.41[1..8]"

  const quant::QuantizerPtr& base() const { return q_; }
  const std::vector<int>& bit_options() const { return bits_; }
  int64_t size() const { return static_cast<int64_t>(bits_.size()); }
  bool learned() const { return bits_.size() > 1; }
  // The parameter s (undefined when not learned).
  const torch::Tensor& bit_logit() const { return s_; }

  // b as a (differentiable unless `grad` is false) float64 scalar tensor on s's device.
  torch::Tensor bits_tensor(bool grad = true) const;
  double bits_value() const;  // b, detached
  // Interpolation weights over the options, float64 [size()]: (1 - f) at i, f at i + 1, 0 elsewhere;
  // differentiable w.r.t. s when `grad`. weights . c = c(b) for any per-option cost vector c.
  torch::Tensor interp_weights(bool grad = true) const;
  // The option nearest to b (ties: the lower bitwidth) — the rounded, snapped bitwidth.
  int64_t nearest() const;
  // Sets b (clamped into the open range; used by tests and to initialise).
  void set_bits(double b);

  // ---- mode of the next forwards
  void set_continuous(bool bit_grad);
  void set_fixed(int64_t option);
  bool fixed() const { return fixed_ >= 0 || !learned(); }

  // When set, the next forward first calls calibrate(x) on the scheme, then clears the flag.
  bool calibrate_next = false;

 private:
  quant::QuantizerPtr q_;
  std::vector<int> bits_;
  torch::Tensor s_;
  int64_t fixed_ = -1;  // >= 0: Fixed at that option
  bool bit_grad_ = true;
};
using LearnedBitQuantizerPtr = std::shared_ptr<LearnedBitQuantizer>;

}  // namespace autoqnn::search
