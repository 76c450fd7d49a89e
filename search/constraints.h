// Budgets, the differentiable cost penalty with its adaptive multipliers, and the derivation of an
// exact-cost policy from architecture probabilities (argmax + repair). Strategy independent: QSS gives
// scheme probabilities, QPL (learned bitwidths) can give bitwidth probabilities in the same form.
//
// Costs: the one cost model of core (autoqnn/cost_model.h): weight bytes (summed), act footprint (max over
// layers), BOPs (summed); a budget is a table of constraints, one per cost kind given.
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
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "autoqnn/cost_model.h"

namespace autoqnn::search {

// One budget: a limit on one cost kind, and the penalty multiplier the search adapts for it.
struct Constraint {
  CostKind kind = CostKind::WeightBytes;
  double limit = 0;       // > 0, in the kind's units (bytes, BOPs)
  double multiplier = 1;  // lambda of the penalty (search state)
  std::string source;     // how it was given: "--budget-kib 12" | "--avg-bits 2" | "--bops 1e+06"
};

// The table of constraints of a search: at most one per cost kind, in cost-kind order.
struct Budgets {
  std::vector<Constraint> constraints;

  const Constraint* find(CostKind k) const;
  Constraint* find(CostKind k);
  bool has(CostKind k) const { return find(k) != nullptr; }
  double limit(CostKind k) const;  // 0 = no limit
  // Sets (or replaces) the limit of kind k, keeping cost-kind order.
  Constraint& set(CostKind k, double limit, std::string source = "");
  nlohmann::json to_json(int64_t num_weights) const;
  std::string describe(int64_t num_weights) const;  // one line for logs
};

// The budget flags given, by flag name ("--budget-kib", "--avg-bits", "--act-budget-kib", "--bops",
// "--wa-bits": the flags of the cost-kind table), in the flag's units ("--wa-bits": the product W * A). A
// value of 0 for an optional kind means no limit. num_weights / macs: the model's quantizable weights and
// MACs per image (the per-weight and per-MAC forms). Throws std::invalid_argument naming the flag for a
// missing / doubled / non-positive value.
Budgets make_budgets(const std::map<std::string, double>& flags, int64_t num_weights, int64_t macs = 0);
// "1,1.25,1.5" -> {1, 1.25, 1.5} (autoqnn/number_text.h); every value positive; errors name the flag.
std::vector<double> parse_budget_list(const std::string& text, const std::string& flag);
// "W,A" of --wa-bits -> W * A; each bitwidth in [1, 32]. Throws std::invalid_argument naming the flag.
double parse_wa_bits(const std::string& text);
// The same from the classic four (tests, benchmarks): exactly one of budget_kib / avg_bits; act_kib, bops:
// 0 = none.
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
  // Measured quality of each option (higher = better, e.g. minus the accuracy drop of an `analyze` table);
  // empty = not measured. Only the budget fill reads it.
  std::vector<double> quality;
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
  int fills = 0;  // budget-fill upgrades (after the refill)
  bool uniform = false;  // >= 2 searched groups and all picked the same option label
  nlohmann::json to_json(const ChoiceProblem& p) const;
};
// argmax per group, then repair until every budget holds: repeatedly apply the single option change that
// loses the least architecture probability per unit of violated cost saved (normalised by the budget;
// savings beyond the current overshoot do not count),
// never raising a violated cost nor breaking a satisfied budget; then refill: while some change to a more
// probable option still fits every budget, apply the one with the most probability gained per unit of
// budget spent; then fill (fill_budget). check_feasible first; throws InfeasibleBudget when the budgets are
// individually feasible but cannot be met together by greedy repair.
Derivation derive(const ChoiceProblem& p, const Budgets& b);

// The budget fill: spends what the budgets leave on upgrades, greedily by the best gain per unit of budget
// spent (each constraint's increase normalised by its limit), while some upgrade fits every budget.
// An upgrade of a group is
//   - with measured quality (ChoiceGroup::quality): an option of higher quality; gain = the quality gained;
//   - without: an option that costs at least as much in every cost kind and more in a budgeted one (more
//     bits somewhere, fewer nowhere); gain = the probability ratio p(new) / p(now), so among upgrades the
//     method's own preference decides.
// It stops when no upgrade fits, i.e. every group has its best option or the smallest remaining upgrade is
// larger than what is left. Returns the number of upgrades applied; `choice` must be within the budgets.
int fill_budget(const ChoiceProblem& p, const Budgets& b, std::vector<int64_t>& choice);

// ---------------------------------------------------------------- penalty
struct ExpectedCost {
  torch::Tensor weight_bytes;  // scalar
  torch::Tensor act_bytes;     // [layers]: expected input-activation bytes of each layer (a Max kind)
  torch::Tensor bops;          // scalar
  const torch::Tensor& at(CostKind k) const;
  torch::Tensor& at(CostKind k);
  Cost values() const;         // detached, combined per kind: weight, max act, bops
};

struct PenaltyOptions {
  double lambda_init = 1.0;
  double eta = 0.05;  // multiplier rate per architecture step
  double tol = 0.01;  // weight budget tolerance band (relative)
  double lambda_min = 1e-4, lambda_max = 1e4;
  nlohmann::json to_json() const;
};
// The penalty of every constraint, with its multiplier.
torch::Tensor cost_penalty(const ExpectedCost& e, const Budgets& b);
// Updates the multiplier of every constraint from the expected cost after an architecture step.
void adapt_multipliers(Budgets& b, const Cost& expected, const PenaltyOptions& o);

}  // namespace autoqnn::search
