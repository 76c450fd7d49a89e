// AdaBits (Jin, Yang, Liao, CVPR 2020): ONE set of weights that runs at every bitwidth of a list.
//
//   - every quantizable layer gets a SwitchableQuantizer in its weight and its input-activation slot: one
//     quantizer per bitwidth (weights: SAT "sat:b", with ":rescale" where no BatchNorm follows the layer;
//     activations: CG-PACT "pact:b", one learned clip per bitwidth; "uniform:b" for a signed input; the
//     first layer's input, the image, stays fp32);
//   - every BatchNorm becomes switchable (one BatchNorm per bitwidth, switchable_bn.h);
//   - a training step sums the cross-entropy of every bitwidth (divided by their number), then takes ONE
//     optimizer step.
//
// The plan (bit list + per-layer specs + the BatchNorm after each layer) is recorded in the checkpoint
// (kind "adabits", extra.adabits) so that eval --bits B and policies can select any listed bitwidth.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autoqnn/checkpoint.h"
#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "quantizers/quantizer.h"

namespace autoqnn {

// A layer slot holding one quantizer per bitwidth (children "b<bits>"). select(b) picks the one forward()
// uses; select(0) makes the slot the identity (float).
class SwitchableQuantizer : public quant::FakeQuantizer {
 public:
  // `spec` at any bitwidth; one copy per listed bitwidth is built (std::invalid_argument for an invalid one).
  SwitchableQuantizer(quant::Role role, const quant::QuantSpec& spec, const std::vector<int>& bits);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::string describe() const override;  // "switch{pact:8,pact:4}@4" (the selected bitwidth after '@')

  void select(int bits);  // 0 = identity; else a listed bitwidth (std::invalid_argument naming the list)
  int selected() const { return active_; }
  const std::vector<int>& bits_list() const { return bits_; }
  const quant::QuantizerPtr& at_bits(int bits) const;
  // When set, the next forward calls calibrate(x) on every per-bit quantizer first, then clears the flag.
  bool calibrate_next = false;

 private:
  quant::Role role_;
  std::vector<int> bits_;
  std::vector<quant::QuantizerPtr> q_;
  int active_ = 0;
};

struct AdaBitsLayer {
  std::string name;        // dotted layer name
  quant::QuantSpec weight;  // at bits[0]
  quant::QuantSpec act;     // at bits[0] ("fp32" = not quantized)
  std::string bn;           // the BatchNorm that follows the layer ("" = none)
};

struct AdaBitsPlan {
  std::vector<int> bits;  // as given (e.g. 8,6,5,4); bits[0] is the bitwidth the specs are written at
  std::vector<AdaBitsLayer> layers;
  quant::QuantSpec weight_at(size_t layer, int bits) const;
  quant::QuantSpec act_at(size_t layer, int bits) const;
  bool has_bits(int b) const;
  std::string bits_string() const;  // "8,6,5,4"
  nlohmann::json to_json() const;
  // Throws std::runtime_error naming `source` and the bad key.
  static AdaBitsPlan from_json(const nlohmann::json& j, const std::string& source);
};

// "8,6,5,4" -> {8,6,5,4}. Every entry in 2..8, no repeats (std::invalid_argument naming `what`).
std::vector<int> parse_bits_list(const std::string& text, const std::string& what = "--adabits");

// For every quantizable layer: the name of the BatchNorm that directly follows it in registration order
// with as many features as the layer has outputs ("" when none, e.g. classifiers).
std::vector<std::pair<std::string, std::string>> following_batchnorm(Model& model);

// The default plan: weights sat:b (":rescale" on layers without a following BatchNorm); input activations
// pact:b where the input is non-negative on `probe` (one batch through the float model), uniform:b
// otherwise; the first layer's input stays fp32.
AdaBitsPlan make_adabits_plan(Model& model, const std::vector<int>& bits, const torch::Tensor& probe);

// Installs the plan: switchable quantizers in every layer slot, every SwitchableBatchNorm2d made switchable
// (copies of its current state). The model is left selected at 0 (float). Throws when the layers differ.
void install_adabits(Model& model, const AdaBitsPlan& plan);
// Selects `bits` everywhere (0 = float). std::invalid_argument when `bits` is not listed.
void select_bits(Model& model, int bits);
// Per-layer selection from a policy whose every layer uses the plan's specs at a listed bitwidth
// (mixed precision across layers allowed): each slot selects its spec's bitwidth and the BatchNorm after a
// layer selects the layer's weight bitwidth. Throws PolicyError naming the layer and the allowed specs.
void select_policy(Model& model, const AdaBitsPlan& plan, const Policy& policy);
// The policy of the model at one listed bitwidth (facts and totals filled).
Policy adabits_policy(Model& model, const AdaBitsPlan& plan, int bits);

// Calibrates the per-bit activation clips: `batches` batches of `data` through the float model (eval mode,
// no gradient), every per-bit quantizer calibrated on its layer's input. Restores training flags.
int64_t calibrate_adabits(Model& model, const TensorDataset& data, int64_t batches, int64_t batch_size,
                          uint64_t seed, torch::Device device);

// The AdaBits training loss: sum over `bits` of CE(model at that bitwidth (x), y), divided by the number of
// bitwidths (so --lr keeps its single-bitwidth meaning). `logits` receives the logits of bits[0]. The model
// is left selected at bits.back().
torch::Tensor adabits_loss(Model& model, const std::vector<int>& bits, const torch::Tensor& x, const torch::Tensor& y,
                           torch::Tensor& logits);

// Search warm start: writes an FP32 checkpoint (kind "fp32") of the AdaBits checkpoint `path`: its latent
// weights and biases, and every BatchNorm set to the mean of its per-bit BatchNorms (parameters and running
// statistics). Quantizer state is not carried (the search calibrates its candidates).
void adabits_warm_start(const std::string& path, const std::string& out_fp32);

CheckpointMeta adabits_meta(const Model& model, const AdaBitsPlan& plan, const std::string& dataset, int64_t epoch);
bool is_adabits(const CheckpointMeta& meta);
AdaBitsPlan adabits_plan_of(const CheckpointMeta& meta, const std::string& path);

}  // namespace autoqnn
