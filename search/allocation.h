// Exact allocation over a choice problem (constraints.h): pick one option per group to maximise the summed
// measured quality (ChoiceGroup::quality, e.g. minus the accuracy drop of an `analyze` table; the
// HAWQ-v3-style additive model) under every budget. A multiple-choice knapsack:
//
//   max  sum_g sum_c q[g][c] x[g][c]
//   s.t. sum_c x[g][c] = 1                             every group picks one option
//        sum_g sum_c cost_k[g][c] x[g][c] <= B_k      every budgeted Sum kind (weight bytes, BOPs)
//        x[g][c] = 0 where cost_k[g][c] > B_k          every budgeted Max kind (act footprint): per layer
//        x binary
//
// Two exact solvers: dynamic programming over the one budgeted Sum kind (integer costs, divided by their
// common divisor; O(options x capacity)), and GLPK's branch and cut for any number of budgets. `solve`
// takes the DP when it applies and the capacity is small, GLPK otherwise. Ties: the DP keeps the first
// option reaching a value; both report the same (optimal) objective, possibly with different choices.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "search/constraints.h"

namespace autoqnn::search {

enum class AllocSolver { Auto, Dp, Glpk };
AllocSolver parse_alloc_solver(const std::string& name);  // "auto" | "dp" | "glpk"
const char* alloc_solver_name(AllocSolver s);

struct Allocation {
  std::vector<int64_t> choice;  // option per group
  double quality = 0;           // sum of the chosen qualities
  Cost cost;
  std::string solver;           // "dp" | "glpk"
};

// Throws InfeasibleBudget (check_feasible's message) when a budget is below the cheapest policy, or when no
// choice meets every budget together; std::invalid_argument when a group has no quality list, or when the
// DP is asked for and does not apply (several Sum budgets, non-integer costs, a capacity over 2e8 units).
Allocation allocate(const ChoiceProblem& p, const Budgets& b, AllocSolver solver = AllocSolver::Auto);

double choice_quality(const ChoiceProblem& p, const std::vector<int64_t>& choice);

}  // namespace autoqnn::search
