#include "search/allocation.h"

#include <glpk.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace autoqnn::search {

AllocSolver parse_alloc_solver(const std::string& name) {
  if (name == "auto") return AllocSolver::Auto;
  if (name == "dp") return AllocSolver::Dp;
  if (name == "glpk") return AllocSolver::Glpk;
  throw std::invalid_argument("--ilp-solver must be auto, dp or glpk, got '" + name + "'");
}

const char* alloc_solver_name(AllocSolver s) {
  switch (s) {
    case AllocSolver::Auto: return "auto";
    case AllocSolver::Dp: return "dp";
    case AllocSolver::Glpk: return "glpk";
  }
  return "?";
}

double choice_quality(const ChoiceProblem& p, const std::vector<int64_t>& choice) {
  double q = 0;
  for (size_t g = 0; g < p.groups.size(); ++g) q += p.groups[g].quality.at(static_cast<size_t>(choice.at(g)));
  return q;
}

namespace {

constexpr double kMaxDpCells = 2e8;   // groups x (capacity + 1): the DP's choice table (1 byte a cell)
constexpr double kAutoDpCells = 3e7;  // auto picks the DP below this

// allowed[g][c]: the option fits every budget on its own (Max kinds are per layer; a Sum-kind option over
// its budget can never be part of a feasible choice).
std::vector<std::vector<char>> allowed_options(const ChoiceProblem& p, const Budgets& b) {
  std::vector<std::vector<char>> a(p.groups.size());
  for (size_t g = 0; g < p.groups.size(); ++g) {
    const auto& grp = p.groups[g];
    for (const auto& c : grp.cost) {
      bool ok = true;
      for (const auto& k : b.constraints) ok = ok && c.at(k.kind) <= k.limit;
      a[g].push_back(ok ? 1 : 0);
    }
    if (std::find(a[g].begin(), a[g].end(), 1) == a[g].end())
      throw InfeasibleBudget("group '" + grp.name + "' has no option within the budgets (" +
                                 b.describe(p.num_weights) + ")",
                             minimum_cost(p));
  }
  return a;
}

std::vector<const Constraint*> sum_constraints(const Budgets& b) {
  std::vector<const Constraint*> out;
  for (const auto& c : b.constraints)
    if (cost_kind(c.kind).combine == Combine::Sum) out.push_back(&c);
  return out;
}

// Why the DP does not apply ("" = it does); cells = groups x (capacity + 1).
std::string dp_blocker(const ChoiceProblem& p, const Budgets& b, const std::vector<std::vector<char>>& allowed,
                       int64_t& unit, int64_t& capacity, double& cells) {
  auto sums = sum_constraints(b);
  unit = 1;
  capacity = 0;
  cells = static_cast<double>(p.groups.size());
  if (sums.size() > 1) return "it takes one Sum budget (weight bytes or BOPs), " + std::to_string(sums.size()) + " given";
  if (sums.empty()) return "";
  const CostKind k = sums[0]->kind;
  int64_t g = 0;
  for (size_t i = 0; i < p.groups.size(); ++i)
    for (size_t c = 0; c < p.groups[i].cost.size(); ++c) {
      if (!allowed[i][c]) continue;
      const double v = p.groups[i].cost[c].at(k);
      if (v != std::floor(v) || v < 0 || v > 9e15) return std::string("the ") + cost_kind(k).label + " costs are not integers";
      g = std::gcd(g, static_cast<int64_t>(v));
    }
  unit = std::max<int64_t>(g, 1);
  capacity = static_cast<int64_t>(std::floor(sums[0]->limit / static_cast<double>(unit)));
  cells = static_cast<double>(p.groups.size()) * (static_cast<double>(capacity) + 1.0);
  if (cells > kMaxDpCells)
    return "its table would have " + std::to_string(static_cast<long long>(cells)) + " cells (at most 2e8)";
  return "";
}

Allocation solve_dp(const ChoiceProblem& p, const Budgets& b, const std::vector<std::vector<char>>& allowed,
                    int64_t unit, int64_t capacity) {
  const size_t G = p.groups.size();
  auto sums = sum_constraints(b);
  const double ninf = -std::numeric_limits<double>::infinity();
  Allocation out;
  out.solver = "dp";
  out.choice.assign(G, 0);
  if (sums.empty()) {  // no Sum budget: the best allowed option of every group
    for (size_t g = 0; g < G; ++g) {
      double best = ninf;
      for (size_t c = 0; c < p.groups[g].quality.size(); ++c)
        if (allowed[g][c] && p.groups[g].quality[c] > best) best = p.groups[g].quality[c], out.choice[g] = static_cast<int64_t>(c);
    }
  } else {
    const CostKind k = sums[0]->kind;
    const size_t W = static_cast<size_t>(capacity) + 1;
    std::vector<double> dp(W, ninf), next(W);
    dp[0] = 0;
    std::vector<std::vector<uint8_t>> pick(G, std::vector<uint8_t>(W, 0));
    for (size_t g = 0; g < G; ++g) {
      const auto& grp = p.groups[g];
      if (grp.cost.size() > 256) throw std::invalid_argument("allocate (dp): group '" + grp.name + "' has over 256 options");
      std::fill(next.begin(), next.end(), ninf);
      for (size_t c = 0; c < grp.cost.size(); ++c) {
        if (!allowed[g][c]) continue;
        const size_t w = static_cast<size_t>(grp.cost[c].at(k)) / static_cast<size_t>(unit);
        const double q = grp.quality[c];
        for (size_t x = w; x < W; ++x) {
          const double v = dp[x - w];
          if (v == ninf) continue;
          if (v + q > next[x]) {  // strict: the first option reaching a value keeps it
            next[x] = v + q;
            pick[g][x] = static_cast<uint8_t>(c);
          }
        }
      }
      dp.swap(next);
    }
    size_t best = W;
    for (size_t x = 0; x < W; ++x)
      if (dp[x] != ninf && (best == W || dp[x] > dp[best])) best = x;  // ties: the cheapest
    if (best == W) throw InfeasibleBudget("no policy meets the budgets (" + b.describe(p.num_weights) + ")", minimum_cost(p));
    size_t x = best;
    for (size_t g = G; g-- > 0;) {
      const size_t c = pick[g][x];
      out.choice[g] = static_cast<int64_t>(c);
      x -= static_cast<size_t>(p.groups[g].cost[c].at(k)) / static_cast<size_t>(unit);
    }
  }
  return out;
}

// One GLPK solve with every Sum budget's right-hand side scaled by `shrink` (<= 1).
bool glpk_once(const ChoiceProblem& p, const Budgets& b, const std::vector<std::vector<char>>& allowed, double shrink,
               std::vector<int64_t>& choice) {
  const size_t G = p.groups.size();
  auto sums = sum_constraints(b);
  double qscale = 0;
  for (size_t g = 0; g < G; ++g)
    for (size_t c = 0; c < p.groups[g].quality.size(); ++c)
      if (allowed[g][c]) qscale = std::max(qscale, std::abs(p.groups[g].quality[c]));
  if (!(qscale > 0)) qscale = 1;
  glp_prob* lp = glp_create_prob();
  struct Free {
    glp_prob* lp;
    ~Free() { glp_delete_prob(lp); }
  } guard{lp};
  glp_set_obj_dir(lp, GLP_MAX);
  const int rows = static_cast<int>(G + sums.size());
  glp_add_rows(lp, rows);
  for (size_t g = 0; g < G; ++g) glp_set_row_bnds(lp, static_cast<int>(g) + 1, GLP_FX, 1.0, 1.0);
  for (size_t s = 0; s < sums.size(); ++s) glp_set_row_bnds(lp, static_cast<int>(G + s) + 1, GLP_UP, 0.0, shrink);
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  std::vector<std::pair<size_t, size_t>> col_of{{0, 0}};
  for (size_t g = 0; g < G; ++g)
    for (size_t c = 0; c < p.groups[g].cost.size(); ++c) {
      if (!allowed[g][c]) continue;
      const int j = glp_add_cols(lp, 1);
      col_of.push_back({g, c});
      glp_set_col_kind(lp, j, GLP_BV);
      glp_set_obj_coef(lp, j, p.groups[g].quality[c] / qscale);
      ia.push_back(static_cast<int>(g) + 1), ja.push_back(j), ar.push_back(1.0);
      for (size_t s = 0; s < sums.size(); ++s) {
        const double v = p.groups[g].cost[c].at(sums[s]->kind) / sums[s]->limit;  // rows normalised by the budget
        if (v != 0) ia.push_back(static_cast<int>(G + s) + 1), ja.push_back(j), ar.push_back(v);
      }
    }
  glp_load_matrix(lp, static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.presolve = GLP_ON;
  parm.msg_lev = GLP_MSG_OFF;
  parm.mip_gap = 0.0;
  const int rc = glp_intopt(lp, &parm);
  const int st = glp_mip_status(lp);
  if (rc == GLP_ENOPFS || rc == GLP_ENODFS || st == GLP_NOFEAS) return false;
  if (rc != 0 || st != GLP_OPT)
    throw std::runtime_error("allocate (glpk): glp_intopt failed (return code " + std::to_string(rc) + ", status " +
                             std::to_string(st) + ")");
  choice.assign(G, -1);
  for (size_t j = 1; j < col_of.size(); ++j)
    if (glp_mip_col_val(lp, static_cast<int>(j)) > 0.5) choice[col_of[j].first] = static_cast<int64_t>(col_of[j].second);
  for (size_t g = 0; g < G; ++g)
    if (choice[g] < 0) throw std::runtime_error("allocate (glpk): group '" + p.groups[g].name + "' got no option");
  return true;
}

Allocation solve_glpk(const ChoiceProblem& p, const Budgets& b, const std::vector<std::vector<char>>& allowed) {
  Allocation out;
  out.solver = "glpk";
  // GLPK's feasibility tolerances are relative; a solution a hair over a budget is re-solved with the
  // right-hand sides pulled in (the exact check below decides).
  for (double shrink : {1.0, 1.0 - 1e-7, 1.0 - 1e-5}) {
    if (!glpk_once(p, b, allowed, shrink, out.choice))
      throw InfeasibleBudget("no policy of the search space meets all budgets together (" + b.describe(p.num_weights) +
                                 ")",
                             minimum_cost(p));
    if (within(total_cost(p, out.choice), b)) return out;
  }
  throw std::runtime_error("allocate (glpk): the solution stays over a budget after tightening; please report this");
}

}  // namespace

Allocation allocate(const ChoiceProblem& p, const Budgets& b, AllocSolver solver) {
  for (const auto& g : p.groups)
    if (g.quality.size() != g.cost.size() || g.cost.empty())
      throw std::invalid_argument("allocate: group '" + g.name + "' needs one measured quality per option");
  check_feasible(p, b);
  auto allowed = allowed_options(p, b);
  int64_t unit = 1, capacity = 0;
  double cells = 0;
  const std::string blocker = dp_blocker(p, b, allowed, unit, capacity, cells);
  bool dp = solver == AllocSolver::Dp;
  if (solver == AllocSolver::Dp && !blocker.empty()) throw std::invalid_argument("--ilp-solver dp does not apply: " + blocker);
  if (solver == AllocSolver::Auto) dp = blocker.empty() && cells <= kAutoDpCells;
  Allocation a = dp ? solve_dp(p, b, allowed, unit, capacity) : solve_glpk(p, b, allowed);
  a.cost = total_cost(p, a.choice);
  a.quality = choice_quality(p, a.choice);
  if (!within(a.cost, b)) throw std::logic_error("allocate: the " + a.solver + " solution exceeds a budget; please report this");
  return a;
}

}  // namespace autoqnn::search
