#include "search/constraints.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <utility>

#include "autoqnn/number_text.h"

namespace autoqnn::search {

using nlohmann::json;

namespace {
// Rounded up at `digits` decimals: a printed minimum is always feasible when passed back.
double ceil_to(double v, int digits) {
  double s = std::pow(10.0, digits);
  return std::ceil(v * s - 1e-9) / s;
}
// A value in a flag's units as the flag takes it ("--budget-kib 1.235"), rounded up.
std::string flag_value(const char* flag, double v, int decimals) {
  if (decimals < 0) return std::string(flag) + format_number(" %.6g", v);
  char f[16];
  std::snprintf(f, sizeof f, " %%.%df", decimals);
  return std::string(flag) + format_number(f, ceil_to(v, decimals));
}
}  // namespace

// ---------------------------------------------------------------- budgets
const Constraint* Budgets::find(CostKind k) const {
  for (const auto& c : constraints)
    if (c.kind == k) return &c;
  return nullptr;
}

Constraint* Budgets::find(CostKind k) {
  for (auto& c : constraints)
    if (c.kind == k) return &c;
  return nullptr;
}

double Budgets::limit(CostKind k) const {
  const Constraint* c = find(k);
  return c ? c->limit : 0.0;
}

Constraint& Budgets::set(CostKind k, double limit, std::string source) {
  if (Constraint* c = find(k)) {
    c->limit = limit;
    c->source = std::move(source);
    return *c;
  }
  auto at = std::find_if(constraints.begin(), constraints.end(),
                         [k](const Constraint& c) { return static_cast<int>(c.kind) > static_cast<int>(k); });
  return *constraints.insert(at, Constraint{k, limit, 1.0, std::move(source)});
}

json Budgets::to_json(int64_t n) const {
  const double w = limit(CostKind::WeightBytes);
  const Constraint* wc = find(CostKind::WeightBytes);
  json j = {{"weight_kib", w / 1024.0}, {"avg_weight_bits", avg_bits(w, n)}, {"given_as", wc ? wc->source : ""}};
  for (const auto& t : cost_kinds()) j[t.key] = has(t.kind) ? json(limit(t.kind)) : json(nullptr);
  return j;
}

std::string Budgets::describe(int64_t n) const {
  std::string s;
  for (const auto& c : constraints) {
    const auto& t = cost_kind(c.kind);
    s += (s.empty() ? "" : ", ") + std::string(t.what) + " <= " + t.format(c.limit);
    if (c.kind == CostKind::WeightBytes) s += format_number(" (%.3f bits/weight", avg_bits(c.limit, n)) + ", " + c.source + ")";
    else if (t.per_mac_flag && c.source.rfind(t.per_mac_flag, 0) == 0) s += " (" + c.source + ")";
  }
  return s;
}

Budgets make_budgets(const std::map<std::string, double>& flags, int64_t num_weights, int64_t macs) {
  for (const auto& [flag, v] : flags) {
    bool known = false;
    for (const auto& t : cost_kinds())
      known = known || flag == t.flag || (t.per_weight_flag && flag == t.per_weight_flag) ||
              (t.per_mac_flag && flag == t.per_mac_flag);
    if (!known) throw std::invalid_argument("unknown budget flag '" + flag + "'");
  }
  Budgets b;
  for (const auto& t : cost_kinds()) {
    auto given = flags.find(t.flag);
    auto per_weight = t.per_weight_flag ? flags.find(t.per_weight_flag) : flags.end();
    auto per_mac = t.per_mac_flag ? flags.find(t.per_mac_flag) : flags.end();
    if (given != flags.end() && per_weight != flags.end())
      throw std::invalid_argument(std::string("give either ") + t.flag + " or " + t.per_weight_flag + ", not both");
    if (given != flags.end() && per_mac != flags.end())
      throw std::invalid_argument(std::string("give either ") + t.flag + " or " + t.per_mac_flag + ", not both");
    if (per_mac != flags.end()) {
      const double v = per_mac->second;  // W * A
      if (!(v > 0) || !std::isfinite(v))
        throw std::invalid_argument(std::string(t.per_mac_flag) + ": W x A must be a positive number, got " + format_number("%g", v));
      if (macs <= 0) throw std::invalid_argument(std::string(t.per_mac_flag) + ": the model's MACs are not known");
      b.set(t.kind, v * static_cast<double>(macs), std::string(t.per_mac_flag) + " (W x A = " + format_number("%g", v) + ")");
      continue;
    }
    if (t.required && given == flags.end() && per_weight == flags.end())
      throw std::invalid_argument(std::string("a ") + t.label + " budget is required: " + t.flag + " X" +
                                  (t.per_weight_flag ? std::string(" or ") + t.per_weight_flag + " B" : ""));
    if (per_weight != flags.end()) {
      const double v = per_weight->second;
      if (!(v > 0) || !std::isfinite(v))
        throw std::invalid_argument(std::string(t.per_weight_flag) + " must be a positive number, got " + format_number("%g", v));
      if (num_weights <= 0)
        throw std::invalid_argument(std::string(t.per_weight_flag) + ": the model has no quantizable weight");
      b.set(t.kind, v * static_cast<double>(num_weights) / 8.0, std::string(t.per_weight_flag) + " " + format_number("%g", v));
    } else if (given != flags.end()) {
      const double v = given->second;
      if (t.required && (!(v > 0) || !std::isfinite(v)))
        throw std::invalid_argument(std::string(t.flag) + " must be a positive number, got " + format_number("%g", v));
      if (!t.required && (v < 0 || !std::isfinite(v)))
        throw std::invalid_argument(std::string(t.flag) + " must be positive (0 = no limit), got " + format_number("%g", v));
      if (v > 0) b.set(t.kind, v * t.flag_unit, std::string(t.flag) + " " + format_number("%g", v));
    }
  }
  return b;
}

std::vector<double> parse_budget_list(const std::string& text, const std::string& flag) {
  std::vector<double> out = parse_number_list(text, flag);
  for (double v : out)
    if (!(v > 0)) throw std::invalid_argument(flag + ": " + format_number("%g", v) + " in '" + text + "' is not a positive number");
  return out;
}

double parse_wa_bits(const std::string& text) {
  const std::vector<double> wa = parse_budget_list(text, "--wa-bits");
  if (wa.size() != 2) throw std::invalid_argument("--wa-bits takes W,A (two bitwidths), got '" + text + "'");
  for (double v : wa)
    if (!(v >= 1 && v <= 32))
      throw std::invalid_argument("--wa-bits: each bitwidth must be in [1, 32], got '" + text + "'");
  return wa[0] * wa[1];
}

Budgets make_budgets(std::optional<double> budget_kib, std::optional<double> avg, double act_kib, double bops,
                     int64_t num_weights) {
  std::map<std::string, double> flags = {{"--act-budget-kib", act_kib}, {"--bops", bops}};
  if (budget_kib) flags["--budget-kib"] = *budget_kib;
  if (avg) flags["--avg-bits"] = *avg;
  return make_budgets(flags, num_weights);
}

bool within(const Cost& c, const Budgets& b) {
  for (const auto& k : b.constraints)
    if (c.at(k.kind) > k.limit) return false;
  return true;
}

// ---------------------------------------------------------------- costs of a choice
Cost total_cost(const ChoiceProblem& p, const std::vector<int64_t>& choice) {
  Cost t;
  for (size_t g = 0; g < p.groups.size(); ++g) t.combine(p.groups[g].cost.at(static_cast<size_t>(choice.at(g))));
  return t;
}

Cost minimum_cost(const ChoiceProblem& p) {
  Cost m;
  for (const auto& g : p.groups) {
    Cost lo;
    for (const auto& t : cost_kinds()) {
      double v = std::numeric_limits<double>::infinity();
      for (const auto& c : g.cost) v = std::min(v, c.at(t.kind));
      lo.at(t.kind) = v;
    }
    m.combine(lo);
  }
  return m;
}

void check_feasible(const ChoiceProblem& p, const Budgets& b) {
  Cost m = minimum_cost(p);
  const int64_t n = p.num_weights;
  for (const auto& c : b.constraints) {
    const auto& t = cost_kind(c.kind);
    const double lo = m.at(c.kind);
    if (!(c.limit < lo)) continue;
    std::string msg = std::string(t.label) + " budget " + t.format(c.limit);
    if (t.per_weight_flag) msg += format_number(" (%.4g bits/weight", avg_bits(c.limit, n)) + ", " + c.source + ")";
    msg += " is below the smallest policy of the search space: " + t.format(lo);
    if (t.per_weight_flag) msg += " = " + format_number("%.0f bytes", lo) + format_number(" (%.4g bits/weight)", avg_bits(lo, n));
    msg += "; the minimum feasible budget is " + flag_value(t.flag, lo / t.flag_unit, t.min_decimals);
    if (t.per_weight_flag) msg += " or " + flag_value(t.per_weight_flag, avg_bits(lo, n), 3);
    throw InfeasibleBudget(msg, m);
  }
}

// ---------------------------------------------------------------- derivation
json Derivation::to_json(const ChoiceProblem& p) const {
  json j;
  j["argmax_cost"] = argmax_cost.to_json(p.num_weights);
  j["cost"] = cost.to_json(p.num_weights);
  j["downgrades"] = downgrades;
  j["upgrades"] = upgrades;
  j["fills"] = fills;
  j["uniform"] = uniform;
  json ch = json::object();
  for (size_t g = 0; g < p.groups.size(); ++g) {
    const auto& grp = p.groups[g];
    if (!grp.searched()) continue;
    ch[grp.name] = {{"argmax", grp.labels[static_cast<size_t>(argmax[g])]},
                    {"chosen", grp.labels[static_cast<size_t>(choice[g])]},
                    {"p_chosen", grp.prob[static_cast<size_t>(choice[g])]}};
  }
  j["groups"] = ch;
  return j;
}

namespace {

// Totals with group g switched to option c; Max kinds recomputed from `other` (their max over the other groups).
Cost switched(const Cost& total, const ChoiceGroup& grp, int64_t cur, int64_t c, const Cost& other) {
  const Cost& a = grp.cost[static_cast<size_t>(cur)];
  const Cost& n = grp.cost[static_cast<size_t>(c)];
  Cost t;
  for (const auto& k : cost_kinds())
    t.at(k.kind) = k.combine == Combine::Sum ? total.at(k.kind) - a.at(k.kind) + n.at(k.kind)
                                             : std::max(other.at(k.kind), n.at(k.kind));
  return t;
}

// For every g, the Max kinds' maximum over the groups other than g (prefix / suffix maxima).
std::vector<Cost> max_of_others(const ChoiceProblem& p, const std::vector<int64_t>& choice) {
  const size_t G = p.groups.size();
  std::vector<Cost> pre(G + 1), suf(G + 1), out(G);
  for (const auto& k : cost_kinds()) {
    if (k.combine != Combine::Max) continue;
    auto val = [&](size_t g) { return p.groups[g].cost[static_cast<size_t>(choice[g])].at(k.kind); };
    for (size_t g = 0; g < G; ++g) pre[g + 1].at(k.kind) = std::max(pre[g].at(k.kind), val(g));
    for (size_t g = G; g-- > 0;) suf[g].at(k.kind) = std::max(suf[g + 1].at(k.kind), val(g));
    for (size_t g = 0; g < G; ++g) out[g].at(k.kind) = std::max(pre[g].at(k.kind), suf[g + 1].at(k.kind));
  }
  return out;
}

// What a move from option `a` to option `n` of one group is worth to the repair: the violated cost it saves,
// each normalised by its budget, counted only up to the overshoot (a change that removes the whole
// violation is worth the same whatever it frees beyond it, so a big layer does not win just by being big:
// it would strand budget that the refill cannot re-spend). false when the move raises a violated cost or
// breaks a satisfied budget.
bool repair_gain(const Budgets& b, const Cost& cur, const Cost& a, const Cost& n, const Cost& after, double& gain) {
  gain = 0;
  for (const auto& c : b.constraints) {
    const auto k = c.kind;
    if (cur.at(k) > c.limit) {
      if (n.at(k) > a.at(k)) return false;
      if (cost_kind(k).combine == Combine::Sum) gain += std::min(a.at(k) - n.at(k), cur.at(k) - c.limit) / c.limit;
      else if (a.at(k) > c.limit) gain += (a.at(k) - std::max(n.at(k), c.limit)) / c.limit;
    } else if (after.at(k) > c.limit) {
      return false;
    }
  }
  return true;
}

}  // namespace

Derivation derive(const ChoiceProblem& p, const Budgets& b) {
  check_feasible(p, b);
  const size_t G = p.groups.size();
  Derivation d;
  d.argmax.resize(G);
  for (size_t g = 0; g < G; ++g) {
    const auto& pr = p.groups[g].prob;
    if (pr.empty() || pr.size() != p.groups[g].cost.size() || pr.size() != p.groups[g].labels.size())
      throw std::logic_error("derive: group '" + p.groups[g].name + "' has inconsistent option lists");
    d.argmax[g] = std::max_element(pr.begin(), pr.end()) - pr.begin();  // ties: the first option
  }
  d.choice = d.argmax;
  d.argmax_cost = total_cost(p, d.choice);
  Cost cur = d.argmax_cost;

  // ---- repair: least probability lost per (normalised) violated cost saved
  while (!within(cur, b)) {
    auto others = max_of_others(p, d.choice);
    double best_score = std::numeric_limits<double>::infinity(), best_gain = 0;
    int64_t best_g = -1, best_c = -1;
    for (size_t g = 0; g < G; ++g) {
      const auto& grp = p.groups[g];
      const int64_t now = d.choice[g];
      const Cost& a = grp.cost[static_cast<size_t>(now)];
      for (int64_t c = 0; c < static_cast<int64_t>(grp.cost.size()); ++c) {
        if (c == now) continue;
        double gain = 0;
        const Cost t = switched(cur, grp, now, c, others[g]);
        if (!repair_gain(b, cur, a, grp.cost[static_cast<size_t>(c)], t, gain) || !(gain > 0)) continue;
        double loss = grp.prob[static_cast<size_t>(now)] - grp.prob[static_cast<size_t>(c)];
        double score = loss / gain;
        if (score < best_score || (score == best_score && gain > best_gain)) {
          best_score = score;
          best_gain = gain;
          best_g = static_cast<int64_t>(g);
          best_c = c;
        }
      }
    }
    if (best_g < 0) {
      const Cost lo = minimum_cost(p);
      std::string each;
      for (const auto& t : cost_kinds()) each += (each.empty() ? "" : ", ") + std::string(t.what) + " " + t.format(lo.at(t.kind));
      throw InfeasibleBudget("no policy of the search space meets all budgets together (" + b.describe(p.num_weights) +
                                 "); the smallest costs taken one at a time are " + each + ": relax one of the budgets",
                             lo);
    }
    d.choice[static_cast<size_t>(best_g)] = best_c;
    cur = total_cost(p, d.choice);
    ++d.downgrades;
  }

  // ---- refill: spend what is left on more probable options (each move raises the total probability).
  for (;;) {
    auto others = max_of_others(p, d.choice);
    double best_ratio = -1;
    int64_t best_g = -1, best_c = -1;
    for (size_t g = 0; g < G; ++g) {
      const auto& grp = p.groups[g];
      const int64_t now = d.choice[g];
      const Cost& a = grp.cost[static_cast<size_t>(now)];
      for (int64_t c = 0; c < static_cast<int64_t>(grp.cost.size()); ++c) {
        double gain = grp.prob[static_cast<size_t>(c)] - grp.prob[static_cast<size_t>(now)];
        if (!(gain > 0)) continue;
        Cost t = switched(cur, grp, now, c, others[g]);
        if (!within(t, b)) continue;
        const Cost& n = grp.cost[static_cast<size_t>(c)];
        double spend = 0;
        for (const auto& k : b.constraints) spend += std::max(0.0, n.at(k.kind) - a.at(k.kind)) / k.limit;
        double ratio = gain / std::max(spend, 1e-12);
        if (ratio > best_ratio) {
          best_ratio = ratio;
          best_g = static_cast<int64_t>(g);
          best_c = c;
        }
      }
    }
    if (best_g < 0) break;
    d.choice[static_cast<size_t>(best_g)] = best_c;
    cur = total_cost(p, d.choice);
    ++d.upgrades;
  }
  d.fills = fill_budget(p, b, d.choice);
  d.cost = total_cost(p, d.choice);

  // ---- degenerate result: every searched group on the same option
  int searched = 0;
  std::string first;
  bool same = true;
  for (size_t g = 0; g < G; ++g) {
    if (!p.groups[g].searched()) continue;
    const std::string& l = p.groups[g].labels[static_cast<size_t>(d.choice[g])];
    if (searched++ == 0) first = l;
    else if (l != first) same = false;
  }
  d.uniform = searched >= 2 && same;
  return d;
}

int fill_budget(const ChoiceProblem& p, const Budgets& b, std::vector<int64_t>& choice) {
  const size_t G = p.groups.size();
  Cost cur = total_cost(p, choice);
  if (!within(cur, b)) throw std::logic_error("fill_budget: the choice is over the budget");
  int fills = 0;
  for (;;) {
    auto others = max_of_others(p, choice);
    double best_ratio = -1;
    int64_t best_g = -1, best_c = -1;
    for (size_t g = 0; g < G; ++g) {
      const auto& grp = p.groups[g];
      const bool measured = !grp.quality.empty();
      if (measured && grp.quality.size() != grp.cost.size())
        throw std::logic_error("fill_budget: group '" + grp.name + "' has inconsistent quality list");
      const int64_t now = choice[g];
      const Cost& a = grp.cost[static_cast<size_t>(now)];
      for (int64_t c = 0; c < static_cast<int64_t>(grp.cost.size()); ++c) {
        if (c == now) continue;
        const Cost& n = grp.cost[static_cast<size_t>(c)];
        double spend = 0;
        for (const auto& k : b.constraints) spend += std::max(0.0, n.at(k.kind) - a.at(k.kind)) / k.limit;
        double gain;
        if (measured) {
          gain = grp.quality[static_cast<size_t>(c)] - grp.quality[static_cast<size_t>(now)];
          if (!(gain > 0)) continue;
        } else {
          bool dominates = spend > 0;
          for (const auto& k : cost_kinds()) dominates = dominates && n.at(k.kind) >= a.at(k.kind);
          if (!dominates) continue;
          const double pn = grp.prob[static_cast<size_t>(now)], pc = grp.prob[static_cast<size_t>(c)];
          gain = pc / std::max(pn, 1e-300);
        }
        if (!within(switched(cur, grp, now, c, others[g]), b)) continue;
        const double ratio = gain / std::max(spend, 1e-12);
        if (ratio > best_ratio) {  // ties: the first group / option
          best_ratio = ratio;
          best_g = static_cast<int64_t>(g);
          best_c = c;
        }
      }
    }
    if (best_g < 0) break;
    choice[static_cast<size_t>(best_g)] = best_c;
    cur = total_cost(p, choice);
    ++fills;
  }
  return fills;
}

// ---------------------------------------------------------------- penalty
const torch::Tensor& ExpectedCost::at(CostKind k) const {
  switch (k) {
    case CostKind::WeightBytes: return weight_bytes;
    case CostKind::ActBytes: return act_bytes;
    case CostKind::Bops: return bops;
  }
  throw std::logic_error("ExpectedCost::at: unknown cost kind");
}

torch::Tensor& ExpectedCost::at(CostKind k) { return const_cast<torch::Tensor&>(std::as_const(*this).at(k)); }

Cost ExpectedCost::values() const {
  Cost c;
  for (const auto& k : cost_kinds()) {
    const torch::Tensor& t = at(k.kind);
    if (!t.defined() || t.numel() == 0) continue;
    c.at(k.kind) = k.combine == Combine::Max ? t.max().item<double>() : t.sum().item<double>();
  }
  return c;
}

json PenaltyOptions::to_json() const {
  return {{"lambda_init", lambda_init}, {"eta", eta}, {"tol", tol}, {"lambda_min", lambda_min},
          {"lambda_max", lambda_max}};
}

// TwoSided: lambda (E / B - 1)^2 drives E to the budget. AtMost: lambda relu(E / B - 1)^2, summed over the
// layers for a Max kind (each layer's footprint must fit).
torch::Tensor cost_penalty(const ExpectedCost& e, const Budgets& b) {
  torch::Tensor p;
  for (const auto& c : b.constraints) {
    const auto& k = cost_kind(c.kind);
    const torch::Tensor& v = e.at(c.kind);
    if (!v.defined()) continue;
    torch::Tensor term;
    if (k.shape == BudgetShape::TwoSided) {
      auto u = v / c.limit - 1.0;
      term = c.multiplier * u * u;
    } else if (k.combine == Combine::Max) {
      term = c.multiplier * torch::relu(v / c.limit - 1.0).pow(2).sum();
    } else {
      auto u = torch::relu(v / c.limit - 1.0);
      term = c.multiplier * u * u;
    }
    p = p.defined() ? p + term : term;
  }
  if (!p.defined()) throw std::invalid_argument("cost_penalty: no budget");
  return p;
}

// Multiplicative updates keep lambda scale-free: TwoSided grows while E is off the budget by more than the
// tolerance band and decays inside it; AtMost grows while over and decays while under.
void adapt_multipliers(Budgets& b, const Cost& e, const PenaltyOptions& o) {
  for (auto& c : b.constraints) {
    const double u = e.at(c.kind) / c.limit - 1.0;
    const double signal = cost_kind(c.kind).shape == BudgetShape::TwoSided ? std::abs(u) - o.tol : u;
    c.multiplier = std::clamp(c.multiplier * std::exp(o.eta * signal), o.lambda_min, o.lambda_max);
  }
}

}  // namespace autoqnn::search
