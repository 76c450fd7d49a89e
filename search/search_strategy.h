// What a search method is to the driver (search_driver.h): a SearchStrategy (the trainable module, its
// architecture parameters, the expected cost and the discrete choice problem) built from typed options.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "quantizers/spec.h"
#include "search/constraints.h"

namespace autoqnn::search {

// The typed options of a search method. JSON is their form only inside the search state and the policy
// provenance (to_json; each method reads it back with its own OptionFields table).
struct StrategyOptions {
  virtual ~StrategyOptions() = default;
  virtual nlohmann::json to_json() const = 0;
  // The learning rate of the architecture optimiser when the method sets its own (QPL: --bit-lr).
  virtual std::optional<double> arch_lr() const { return std::nullopt; }
};
using StrategyOptionsPtr = std::shared_ptr<const StrategyOptions>;

enum class Phase { Warmup, Weights, Arch };

// What a search method provides to the driver.
class SearchStrategy {
 public:
  virtual ~SearchStrategy() = default;
  virtual std::string method() const = 0;
  // Everything the state file must hold besides the optimisers (model weights, quantizer state, arch params).
  virtual std::shared_ptr<torch::nn::Module> module() = 0;
  virtual std::vector<torch::Tensor> weight_parameters() = 0;
  virtual std::vector<torch::Tensor> arch_parameters() = 0;
  virtual int64_t num_weights() const = 0;  // quantizable weight elements (for --avg-bits)

  // Prepares the architecture of the next forward. progress in [0, 1] over the search epochs (0 during the
  // warm-up); step_seed makes any sampling a pure function of the step.
  virtual void begin_step(Phase phase, double progress, uint64_t step_seed) = 0;
  virtual void begin_eval() = 0;  // the argmax architecture (validation)
  // Data-dependent initialisation of every candidate quantizer from one batch (no gradient).
  virtual void calibrate(const torch::Tensor& images, uint64_t step_seed) = 0;
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;

  virtual ExpectedCost expected_cost() = 0;      // differentiable w.r.t. the arch parameters
  virtual ChoiceProblem choice_problem() = 0;    // probabilities + exact costs
  // (weight, act) spec per layer name for a choice per group.
  virtual std::vector<std::pair<std::string, std::pair<quant::QuantSpec, quant::QuantSpec>>> layer_specs(
      const std::vector<int64_t>& choice) = 0;
  // Progress-bar / CSV metrics of the architecture (e.g. tau, entropy).
  virtual std::vector<std::pair<std::string, double>> metrics(double progress) = 0;
  virtual nlohmann::json probabilities_json() = 0;  // {layer: [{"weight", "act", "p"}...]}
  virtual nlohmann::json config_json() const = 0;   // the options (to_json) to rebuild it from a state
  // Method-specific state worth recording per epoch and in the policy provenance (QPL: the learned
  // continuous bitwidths); null = nothing.
  virtual nlohmann::json learned_json() { return nullptr; }
};

// The part of a strategy that forwards to its trainable network (QSS's Supernet, QPL's QplNet): the net
// holds the layers, parameters and costs; the strategy adds the method's schedule.
template <class Net>
class NetStrategy : public SearchStrategy {
 public:
  std::shared_ptr<torch::nn::Module> module() override { return net_; }
  std::vector<torch::Tensor> weight_parameters() override { return net_->weight_parameters(); }
  int64_t num_weights() const override { return net_->num_weights(); }
  torch::Tensor forward(const torch::Tensor& x) override { return net_->forward(x); }
  ExpectedCost expected_cost() override { return net_->expected_cost(); }
  std::vector<std::pair<std::string, std::pair<quant::QuantSpec, quant::QuantSpec>>> layer_specs(
      const std::vector<int64_t>& choice) override {
    auto specs = net_->layer_specs(choice);
    std::vector<std::pair<std::string, std::pair<quant::QuantSpec, quant::QuantSpec>>> out;
    for (size_t i = 0; i < specs.size(); ++i) out.push_back({net_->layers()[i].name, specs[i]});
    return out;
  }

 protected:
  explicit NetStrategy(std::shared_ptr<Net> net) : net_(std::move(net)) {}
  std::shared_ptr<Net> net_;
};

}  // namespace autoqnn::search
