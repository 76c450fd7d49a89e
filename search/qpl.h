// QPL, quantization-precision learning: the SearchStrategy that keeps one quantization scheme per layer and
// learns its bitwidth as a continuous value (search/learned_bit_quantizer.h: b = v_0 + (v_n - v_0) sigmoid(s),
// fractional-bit interpolation between the neighbouring valid bitwidths). The driver (search_driver.h) runs
// it like QSS: weight steps (SGD, b detached) and bit steps (Adam on s, its own learning rate: the driver's
// architecture optimiser) on
//
//     L = CE(val batch) + lambda_w (Size(b) / B_w - 1)^2 + lambda_a sum_l relu(Mem_l(b) / B_a - 1)^2 (+ BOPs)
//
// where Size, Mem and BOPs are the exact per-bitwidth costs interpolated by the same weights as the
// quantizer outputs (continuous and piecewise linear in b, exact at every valid bitwidth). Derivation: each
// layer's options are its valid bitwidths with the pseudo-probabilities p_k ~ exp(-(b - v_k)^2 / (2 sigma^2)),
// so the argmax is b rounded to the nearest valid bitwidth and the generic repair / refill of constraints.h
// makes the exact cost fit, moving first the layers whose b is closest to the next bitwidth down.
//
// Options (SearchOptions::strategy JSON, saved in the state):
//   weight        spec for every layer's weight not listed in "layers" (its bits = initial b), e.g. "vecq:4"
//   act           spec for every layer's input activation not in "layers" (default "fp32": not quantized)
//   layers        {layer: {"weight": spec, "act": spec}}: per-layer schemes (e.g. from a policy, or the
//                 QSS stage of qss+qpl)
//   bits_min, bits_max           weight bitwidth range (1, 8), intersected with each scheme's valid bits
//   act_bits_min, act_bits_max   activation bitwidth range (2, 8)
//   init_bits, init_act_bits     initial b of every learned quantizer (0 = the spec's own bits)
//   snap_sigma    width of the pseudo-probabilities used by the derivation (0.5)
//   source        free text recorded with the options (where the schemes came from)
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/policy.h"
#include "search/learned_bit_quantizer.h"
#include "search/search_method.h"
#include "search/search_strategy.h"
#include "search/supernet.h"

namespace autoqnn::search {

struct QplOptions : StrategyOptions {
  std::string weight;        // default weight spec ("" = every layer must be in `layers`)
  std::string act = "fp32";  // default act spec
  nlohmann::json layers = nlohmann::json::object();
  int bits_min = 1, bits_max = 8;
  int act_bits_min = 2, act_bits_max = 8;
  double init_bits = 0, init_act_bits = 0;
  double snap_sigma = 0.5;
  std::string source;
  // Learning rate of the bit parameters (--bit-lr); unset = the driver's architecture optimiser as given.
  // Not part of the JSON form: the driver records the optimiser it ran.
  std::optional<double> bit_lr;
  // --qpl-act not given (flags only, not in the JSON form): under a BOPs budget run_qpl picks every
  // layer's act scheme from data (qpl_default_acts); without one the acts stay `act` (fp32).
  bool act_from_budget = false;
  // Unknown keys and bad values -> std::invalid_argument naming the key.
  static QplOptions from_json(const nlohmann::json& j);
  nlohmann::json to_json() const override;
  std::optional<double> arch_lr() const override { return bit_lr; }
  void validate() const;
};
// QPL's activations under a BOPs budget when --qpl-act is not given: {layer: act spec}, PACT where the
// layer's input, measured on two train batches, is never negative (PACT's range is [0, alpha]: the
// half-range it would waste on a signed input costs a bit), uniform (signed) elsewhere, e.g. on the
// normalised image; at A = round(BOPs per MAC / weight_bits) bits, clamped to [act_bits_min, act_bits_max].
std::map<std::string, std::string> qpl_default_acts(Model& model, const TensorDataset& train, double bops_per_mac,
                                                    double weight_bits, const QplOptions& o, uint64_t seed);
// The flags QPL's bit range / learning rate are set by (shared with qss+qpl), and QPL's own flags.
std::vector<MethodFlag> qpl_bit_flags();
// Bit range and --bit-lr from the flags (qpl_bit_flags) into `o`.
void qpl_bits_from_flags(const FlagValues& f, QplOptions& o);

// {layer: {"weight": spec, "act": spec}} of a policy (for QplOptions::layers).
nlohmann::json qpl_layers_from_policy(const Policy& p);

struct QplLayer {
  std::string name;
  QuantLayer* layer = nullptr;
  LayerProfile profile;
  quant::QuantSpec weight_spec, act_spec;  // schemes (bits = the initial value)
  LearnedBitQuantizerPtr wq, aq;           // null for fp32
  std::vector<int> wbits, abits;           // options (fp32: {32})
  std::vector<Cost> costs;                 // exact cost of each (weight, act) option: index i * |abits| + j
};

// The module saved in the search state: the model with a LearnedBitQuantizer in every quantized slot.
class QplNet : public torch::nn::Module {
 public:
  QplNet(ModelPtr model, const QplOptions& opt);
  torch::Tensor forward(const torch::Tensor& x) { return model_->forward(x); }
  Model& model() { return *model_; }
  std::vector<QplLayer>& layers() { return layers_; }
  const std::vector<QplLayer>& layers() const { return layers_; }
  int64_t num_weights() const { return num_weights_; }

  std::vector<torch::Tensor> bit_parameters() const;
  std::vector<torch::Tensor> weight_parameters();
  void set_continuous(bool bit_grad);
  void fix_nearest();  // every quantizer at its rounded bitwidth
  void calibrate_next();

  ExpectedCost expected_cost() const;  // Size(b), Mem_l(b), BOPs(b), differentiable w.r.t. the bit logits
  ChoiceProblem choice_problem(double sigma) const;
  std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>> layer_specs(const std::vector<int64_t>& choice) const;
  nlohmann::json probabilities_json(double sigma) const;
  nlohmann::json learned_bits_json() const;  // {layer: {"weight": b, "weight_range": [lo, hi], "act": ...}}
  double mean_weight_bits() const;           // params-weighted mean of the continuous weight bits

 private:
  ModelPtr model_;
  std::vector<QplLayer> layers_;
  int64_t num_weights_ = 0;
};
using QplNetPtr = std::shared_ptr<QplNet>;

// Pseudo-probabilities of the options of one learned quantizer (1 for a fixed one).
std::vector<double> snap_probabilities(const std::vector<int>& options, double b, double sigma);

class QplStrategy : public NetStrategy<QplNet> {
 public:
  QplStrategy(ModelPtr model, QplOptions opt);

  std::string method() const override { return "qpl"; }
  std::vector<torch::Tensor> arch_parameters() override { return net_->bit_parameters(); }
  void begin_step(Phase phase, double progress, uint64_t step_seed) override;
  void begin_eval() override { net_->fix_nearest(); }
  void calibrate(const torch::Tensor& images, uint64_t step_seed) override;
  ChoiceProblem choice_problem() override { return net_->choice_problem(opt_.snap_sigma); }
  std::vector<std::pair<std::string, double>> metrics(double progress) override;
  nlohmann::json probabilities_json() override { return net_->probabilities_json(opt_.snap_sigma); }
  nlohmann::json config_json() const override { return opt_.to_json(); }
  nlohmann::json learned_json() override { return net_->learned_bits_json(); }

  QplNet& net() { return *net_; }

 private:
  QplOptions opt_;
};

// The method row of "qpl" (search_method.h).
SearchMethod qpl_method();

}  // namespace autoqnn::search
