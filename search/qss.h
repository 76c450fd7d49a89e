// QSS, quantization-scheme search: the SearchStrategy that searches over a supernet (supernet.h) whose
// candidates are quantizer specs (schemes x bitwidths, weights x activations), with Gumbel-softmax
// sampling and a temperature annealed over the search epochs.
//
// Options (SearchOptions::strategy JSON, saved in the state):
//   sampling      "hard" (default): straight-through Gumbel: the forward value is the sampled candidate;
//                 weight steps evaluate only the sampled candidates, architecture steps evaluate every
//                 weight candidate (the unsampled ones without autograd) and only the sampled act
//                 candidate (every act candidate when all_act_paths). ~1.7x an FP32 step on ResNet-20,
//                 1.4x without all_act_paths (docs/benchmarks.md)
//                 "soft": every candidate evaluated and mixed by y = softmax((theta + g) / tau), ~2x
//   tau_start, tau_end, tau_schedule   5, 0.1, "exp" (see TemperatureSchedule)
//   arch_logits   "joint" (default): a logit per (weight, act) pair | "factored": theta_w[w] + theta_a[a]
//                 (supernet.h). Factored lost W2A2 on LeNet-5 (the BOPs penalty's gradient, summed over
//                 every weight candidate, drove the act logits to 2 bits: docs/search.md)
//   all_act_paths true (default; `--act-paths all`): see ArchSample::all_act_paths. false was the default
//                 until the W+A study: the act choice then learnt from one sampled path per step and QSS
//                 missed uniform W3A3 / W2A2 by 3-4 points (docs/results.md)
//   gumbel        true: false drops the noise (deterministic softmax(theta / tau) relaxation)
//   theta_init    {} | {layer: {"<weight spec>|<act spec>": logit}}: the initial architecture logits (a prior;
//                 `search --init-from-sensitivity` builds it from an `analyze` table, sensitivity_prior.h).
//                 Candidates it does not name start at 0; a shared group takes the mean over its layers;
//                 factored logits take the least-squares fit of the joint prior.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>

#include "search/search_method.h"
#include "search/search_strategy.h"
#include "search/supernet.h"

namespace autoqnn::search {

struct QssOptions : StrategyOptions {
  SamplingMode sampling = SamplingMode::Hard;
  ArchLogits arch_logits = ArchLogits::Joint;
  TemperatureSchedule tau;
  bool all_act_paths = true;
  bool gumbel = true;
  nlohmann::json theta_init = nlohmann::json::object();
  // Unknown keys and bad values -> std::invalid_argument naming the key.
  static QssOptions from_json(const nlohmann::json& j);
  nlohmann::json to_json() const override;
  void validate() const;
};
// QSS's options from its command-line flags (--sampling, --tau-*, --init-from-sensitivity, ...).
QssOptions qss_options_from_flags(const FlagValues& f);
std::vector<MethodFlag> qss_flags();

class QssStrategy : public NetStrategy<Supernet> {
 public:
  QssStrategy(ModelPtr model, const SearchSpace& space, QssOptions opt);

  std::string method() const override { return "qss"; }
  std::vector<torch::Tensor> arch_parameters() override { return net_->arch_parameters(); }
  void begin_step(Phase phase, double progress, uint64_t step_seed) override;
  void begin_eval() override { net_->fix_argmax(); }
  void calibrate(const torch::Tensor& images, uint64_t step_seed) override;
  // The supernet's problem, with the theta_init prior as the measured quality of the budget fill.
  ChoiceProblem choice_problem() override;
  std::vector<std::pair<std::string, double>> metrics(double progress) override;
  nlohmann::json probabilities_json() override { return net_->probabilities_json(); }
  nlohmann::json config_json() const override { return opt_.to_json(); }

  Supernet& supernet() { return *net_; }
  const QssOptions& options() const { return opt_; }

 private:
  void apply_theta_init();  // opt_.theta_init -> theta (once, at construction; a resumed state overwrites it)
  QssOptions opt_;
  std::vector<std::vector<double>> quality_;  // per group: summed prior logits (empty = not covered)
};

// The method row of "qss" (search_method.h).
SearchMethod qss_method();

}  // namespace autoqnn::search
