// The supernet's layer-slot quantizer: a FakeQuantizer holding the candidate quantizers of one role
// (weight or input activation) of one layer and mixing their outputs with the probabilities of the
// layer's architecture parameters:
//
//     W_mix = sum_i  m_w[i] * Q_i(W)        m_w = marginal of the joint (weight x act) mixing weights
//     x_mix = sum_j  m_a[j] * Q_j(x)        m_a = marginal over the weight specs
//
// so the layer still calls ONE conv / linear on (x_mix, W_mix), whatever the number of candidates.
// The mixing weights are written once per step by the supernet into the group's ArchSample, shared by
// the weight and the act quantizer of the layer (and by every layer of a shared group).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "quantizers/quantizer.h"
#include "quantizers/spec.h"

namespace autoqnn::search {

struct ArchSample {
  enum class Mode {
    Fixed,  // one candidate (w_index, a_index): eval, derived policy, single-candidate layers
    Soft,   // every candidate evaluated and mixed by w_mix / a_mix
    Hard,   // straight-through: value = the sampled candidate, gradient through w_mix / a_mix
  };
  Mode mode = Mode::Fixed;
  torch::Tensor w_mix, a_mix;        // [nw], [na] (undefined in Fixed mode)
  int64_t w_index = 0, a_index = 0;  // Fixed / Hard: the chosen candidate
  // Hard mode, act role: false = evaluate only the sampled act quantizer (the gradient reaches the
  // architecture through the sampled probability only, GDAS-style); true = evaluate every act candidate
  // (exact straight-through gradient, costs one act quantizer per candidate).
  bool all_act_paths = false;
};
using ArchSamplePtr = std::shared_ptr<ArchSample>;

class MixedQuantizer : public quant::FakeQuantizer {
 public:
  MixedQuantizer(quant::Role role, std::vector<quant::QuantizerPtr> candidates, ArchSamplePtr sample);
  // Builds the candidates with quant::make_quantizer; "fp32" candidates are kept as identity.
  static std::shared_ptr<MixedQuantizer> make(quant::Role role, const std::vector<quant::QuantSpec>& specs,
                                              ArchSamplePtr sample);

  torch::Tensor forward(const torch::Tensor& x) override;
  std::string describe() const override;  // "mix{esb:3:k=1,esb:4:k=1}"

  quant::Role role() const { return role_; }
  int64_t size() const { return static_cast<int64_t>(specs_.size()); }
  const std::vector<quant::QuantSpec>& specs() const { return specs_; }
  // nullptr for an fp32 candidate.
  const quant::QuantizerPtr& candidate(int64_t i) const { return cands_.at(i); }
  const ArchSamplePtr& sample() const { return sample_; }

  // When set, the next forward first calls calibrate(x) on every candidate, then clears the flag.
  bool calibrate_next = false;
  // Number of candidate quantizers evaluated by the last forward (measurements / tests).
  int64_t evaluated_last = 0;

 private:
  torch::Tensor run(int64_t i, const torch::Tensor& x);
  quant::Role role_;
  std::vector<quant::QuantSpec> specs_;
  std::vector<quant::QuantizerPtr> cands_;
  ArchSamplePtr sample_;
};
using MixedQuantizerPtr = std::shared_ptr<MixedQuantizer>;

}  // namespace autoqnn::search
