// Budgets, the differentiable cost penalty with its adaptive multipliers, and the derivation of an
// exact-cost policy from architecture probabilities (argmax + repair). Strategy independent: QSS gives
// scheme probabilities, QPL (learned bitwidths) can give bitwidth probabilities in the same form.
//
// Costs (per image where it applies), all exact integers computed the way the policy accounts them:
//   weight bytes  = sum over layers of quant::storage_cost(weight spec, shape).bytes()  (codes + tables/scales)
//   act bytes     = max over layers of ceil(act bits * input elements / 8)             (footprint: the
//                   largest quantized input tensor; fp32 inputs count 32 bits)
//   BOPs          = sum over layers of MACs * weight code bits * act bits              (fp32 = 32 bits)
//
// Penalty (added to the cross-entropy of the architecture steps), E = expected cost under the
// architecture distribution pi = softmax(theta):
//   P = lambda_w * (E_w / B_w - 1)^2                                  weight: two-sided, E_w is driven TO B_w
//     + lambda_a * sum_l relu(E_a,l / B_a - 1)^2                      act footprint: one-sided, per layer
//     + lambda_b * relu(E_b / B_b - 1)^2                              BOPs: one-sided
// Multiplier rule, after every architecture step (eta = lambda rate, tol = tolerance band):
//   lambda_w <- clip(lambda_w * exp(eta * (|E_w / B_w - 1| - tol)))   grows while E_w is off the budget by
//                                                                      more than tol, decays inside the band
//   lambda_a <- clip(lambda_a * exp(eta * (max_l E_a,l / B_a - 1)))   grows while over, decays while under
//   lambda_b <- clip(lambda_b * exp(eta * (E_b / B_b - 1)))
// clip = [lambda_min, lambda_max]. Multiplicative updates keep lambda scale-free; the expected weight
// size settles within the tolerance band of the budget (docs/search.md).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace autoqnn::search {

struct Cost {
  double weight_bytes = 0;
  double act_bytes = 0;  // largest input tensor
  double bops = 0;
  nlohmann::json to_json(int64_t num_weights = 0) const;  // adds kib / avg_bits when num_weights > 0
};

struct Budgets {
  double weight_bytes = 0;  // required, > 0
  double act_bytes = 0;     // 0 = no limit
  double bops = 0;          // 0 = no limit
  std::string weight_source;  // how it was given: "--budget-kib 12" | "--avg-bits 2"
  bool has_act() const { return act_bytes > 0; }
  bool has_bops() const { return bops > 0; }
  nlohmann::json to_json(int64_t num_weights) const;
  std::string describe(int64_t num_weights) const;  // one line for logs
};
// Exactly one of budget_kib / avg_bits (avg-bits: B * num_weights / 8 bytes); act_kib, bops: 0 = none.
// Throws std::invalid_argument naming the flag for a missing / doubled / non-positive value.
Budgets make_budgets(std::optional<double> budget_kib, std::optional<double> avg_bits, double act_kib,
                     double bops, int64_t num_weights);

bool within(const Cost& c, const Budgets& b);

// ---------------------------------------------------------------- discrete problem + derivation
struct ChoiceGroup {
  std::string name;                 // architecture group: the layer name, or "shared"
  std::vector<std::string> layers;  // layers deciding together
  std::vector<std::string> labels;  // option labels ("esb:4:k=1 / fixed:8")
  std::vector<double> prob;         // architecture probability of each option (sums to 1)
  std::vector<Cost> cost;           // exact cost of each option over the group's layers (act: max)
  bool searched() const { return labels.size() > 1; }
};
struct ChoiceProblem {
  std::vector<ChoiceGroup> groups;
  int64_t num_weights = 0;  // quantizable weight elements (for bits/weight in messages)
};

Cost total_cost(const ChoiceProblem& p, const std::vector<int64_t>& choice);
// The smallest value of each cost over all policies (each cost minimised on its own).
Cost minimum_cost(const ChoiceProblem& p);

// A budget below the cheapest policy of the search space.
struct InfeasibleBudget : std::runtime_error {
  InfeasibleBudget(const std::string& what, Cost minimum) : std::runtime_error(what), minimum(minimum) {}
  Cost minimum;
};
// Throws InfeasibleBudget stating the minimum feasible value (in the units of the flag) of the first
// budget below its minimum.
void check_feasible(const ChoiceProblem& p, const Budgets& b);

struct Derivation {
  std::vector<int64_t> argmax, choice;  // option per group
  Cost argmax_cost, cost;
  int downgrades = 0, upgrades = 0;
  bool uniform = false;  // >= 2 searched groups and all picked the same option label
  nlohmann::json to_json(const ChoiceProblem& p) const;
};
// argmax per group, then repair until every budget holds: repeatedly apply the single option change that
// loses the least architecture probability per unit of violated cost saved (normalised by the budget;
// savings beyond the current overshoot do not count),
// never raising a violated cost nor breaking a satisfied budget; then refill: while some change to a more
// probable option still fits every budget, apply the one with the most probability gained per unit of
// budget spent. check_feasible first; throws InfeasibleBudget when the budgets are individually feasible
// but cannot be met together by greedy repair.
Derivation derive(const ChoiceProblem& p, const Budgets& b);

// ---------------------------------------------------------------- penalty
struct ExpectedCost {
  torch::Tensor weight_bytes;  // scalar
  torch::Tensor act_bytes;     // [layers]: expected input-activation bytes of each layer
  torch::Tensor bops;          // scalar
  Cost values() const;         // detached: weight, max act, bops
};

struct PenaltyOptions {
  double lambda_init = 1.0;
  double eta = 0.05;  // multiplier rate per architecture step
  double tol = 0.01;  // weight budget tolerance band (relative)
  double lambda_min = 1e-4, lambda_max = 1e4;
  nlohmann::json to_json() const;
};
struct Lambdas {
  double weight = 1, act = 1, bops = 1;
};

torch::Tensor cost_penalty(const ExpectedCost& e, const Budgets& b, const Lambdas& l);
void adapt_lambdas(Lambdas& l, const Cost& expected, const Budgets& b, const PenaltyOptions& o);

// "12.34 KiB (2.01 bits/weight)" style helpers for messages.
std::string format_kib(double bytes);
std::string format_bops(double bops);

}  // namespace autoqnn::search
