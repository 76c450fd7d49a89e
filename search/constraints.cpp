#include "search/constraints.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace autoqnn::search {

using nlohmann::json;

namespace {
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
// Rounded up at `digits` decimals: a printed minimum is always feasible when passed back.
double ceil_to(double v, int digits) {
  double s = std::pow(10.0, digits);
  return std::ceil(v * s - 1e-9) / s;
}
double avg_bits(double bytes, int64_t n) { return n > 0 ? 8.0 * bytes / static_cast<double>(n) : 0.0; }
}  // namespace

std::string format_kib(double bytes) { return fmt("%.3f KiB", bytes / 1024.0); }

std::string format_bops(double b) {
  if (b >= 1e9) return fmt("%.4g GBOPs", b / 1e9);
  if (b >= 1e6) return fmt("%.4g MBOPs", b / 1e6);
  return fmt("%.6g BOPs", b);
}

json Cost::to_json(int64_t n) const {
  json j = {{"weight_bytes", weight_bytes}, {"act_bytes", act_bytes}, {"bops", bops}};
  if (n > 0) {
    j["weight_kib"] = weight_bytes / 1024.0;
    j["avg_weight_bits"] = avg_bits(weight_bytes, n);
  }
  return j;
}

json Budgets::to_json(int64_t n) const {
  json j = {{"weight_bytes", weight_bytes}, {"weight_kib", weight_bytes / 1024.0},
            {"avg_weight_bits", avg_bits(weight_bytes, n)}, {"given_as", weight_source}};
  j["act_bytes"] = has_act() ? json(act_bytes) : json(nullptr);
  j["bops"] = has_bops() ? json(bops) : json(nullptr);
  return j;
}

std::string Budgets::describe(int64_t n) const {
  std::string s = "weights <= " + format_kib(weight_bytes) + fmt(" (%.3f bits/weight", avg_bits(weight_bytes, n)) +
                  ", " + weight_source + ")";
  if (has_act()) s += ", act footprint <= " + format_kib(act_bytes);
  if (has_bops()) s += ", BOPs <= " + format_bops(bops);
  return s;
}

Budgets make_budgets(std::optional<double> budget_kib, std::optional<double> avg, double act_kib, double bops,
                     int64_t num_weights) {
  if (budget_kib && avg) throw std::invalid_argument("give either --budget-kib or --avg-bits, not both");
  if (!budget_kib && !avg) throw std::invalid_argument("a weight budget is required: --budget-kib X or --avg-bits B");
  Budgets b;
  if (budget_kib) {
    if (!(*budget_kib > 0) || !std::isfinite(*budget_kib))
      throw std::invalid_argument("--budget-kib must be a positive number, got " + fmt("%g", *budget_kib));
    b.weight_bytes = *budget_kib * 1024.0;
    b.weight_source = "--budget-kib " + fmt("%g", *budget_kib);
  } else {
    if (!(*avg > 0) || !std::isfinite(*avg))
      throw std::invalid_argument("--avg-bits must be a positive number, got " + fmt("%g", *avg));
    if (num_weights <= 0) throw std::invalid_argument("--avg-bits: the model has no quantizable weight");
    b.weight_bytes = *avg * static_cast<double>(num_weights) / 8.0;
    b.weight_source = "--avg-bits " + fmt("%g", *avg);
  }
  if (act_kib < 0 || !std::isfinite(act_kib))
    throw std::invalid_argument("--act-budget-kib must be positive (0 = no limit), got " + fmt("%g", act_kib));
  if (bops < 0 || !std::isfinite(bops))
    throw std::invalid_argument("--bops must be positive (0 = no limit), got " + fmt("%g", bops));
  b.act_bytes = act_kib * 1024.0;
  b.bops = bops;
  return b;
}

bool within(const Cost& c, const Budgets& b) {
  return c.weight_bytes <= b.weight_bytes && (!b.has_act() || c.act_bytes <= b.act_bytes) &&
         (!b.has_bops() || c.bops <= b.bops);
}

// ---------------------------------------------------------------- costs of a choice
Cost total_cost(const ChoiceProblem& p, const std::vector<int64_t>& choice) {
  Cost t;
  for (size_t g = 0; g < p.groups.size(); ++g) {
    const Cost& c = p.groups[g].cost.at(static_cast<size_t>(choice.at(g)));
    t.weight_bytes += c.weight_bytes;
    t.act_bytes = std::max(t.act_bytes, c.act_bytes);
    t.bops += c.bops;
  }
  return t;
}

Cost minimum_cost(const ChoiceProblem& p) {
  Cost m;
  for (const auto& g : p.groups) {
    double w = std::numeric_limits<double>::infinity(), a = w, o = w;
    for (const auto& c : g.cost) {
      w = std::min(w, c.weight_bytes);
      a = std::min(a, c.act_bytes);
      o = std::min(o, c.bops);
    }
    m.weight_bytes += w;
    m.act_bytes = std::max(m.act_bytes, a);
    m.bops += o;
  }
  return m;
}

void check_feasible(const ChoiceProblem& p, const Budgets& b) {
  Cost m = minimum_cost(p);
  const int64_t n = p.num_weights;
  if (b.weight_bytes < m.weight_bytes) {
    throw InfeasibleBudget(
        "weight budget " + format_kib(b.weight_bytes) + fmt(" (%.4g bits/weight", avg_bits(b.weight_bytes, n)) +
            ", " + b.weight_source + ") is below the smallest policy of the search space: " +
            format_kib(m.weight_bytes) + " = " + fmt("%.0f bytes", m.weight_bytes) +
            fmt(" (%.4g bits/weight); the minimum feasible budget is ", avg_bits(m.weight_bytes, n)) +
            fmt("--budget-kib %.3f", ceil_to(m.weight_bytes / 1024.0, 3)) +
            fmt(" or --avg-bits %.3f", ceil_to(avg_bits(m.weight_bytes, n), 3)),
        m);
  }
  if (b.has_act() && b.act_bytes < m.act_bytes) {
    throw InfeasibleBudget("activation budget " + format_kib(b.act_bytes) +
                               " is below the smallest activation footprint of the search space (" +
                               fmt("%.0f bytes", m.act_bytes) + "); the minimum feasible budget is " +
                               fmt("--act-budget-kib %.3f", ceil_to(m.act_bytes / 1024.0, 3)),
                           m);
  }
  if (b.has_bops() && b.bops < m.bops) {
    throw InfeasibleBudget("BOPs budget " + fmt("%.6g", b.bops) + " is below the smallest of the search space; " +
                               fmt("the minimum feasible budget is --bops %.6g", m.bops),
                           m);
  }
}

// ---------------------------------------------------------------- derivation
json Derivation::to_json(const ChoiceProblem& p) const {
  json j;
  j["argmax_cost"] = argmax_cost.to_json(p.num_weights);
  j["cost"] = cost.to_json(p.num_weights);
  j["downgrades"] = downgrades;
  j["upgrades"] = upgrades;
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

// Totals with group g switched to option c; act max recomputed from `act_other` (max over the other groups).
Cost switched(const Cost& total, const ChoiceGroup& grp, int64_t cur, int64_t c, double act_other) {
  const Cost& a = grp.cost[static_cast<size_t>(cur)];
  const Cost& n = grp.cost[static_cast<size_t>(c)];
  Cost t;
  t.weight_bytes = total.weight_bytes - a.weight_bytes + n.weight_bytes;
  t.bops = total.bops - a.bops + n.bops;
  t.act_bytes = std::max(act_other, n.act_bytes);
  return t;
}

// max over groups other than g, for every g (prefix / suffix maxima).
std::vector<double> act_others(const ChoiceProblem& p, const std::vector<int64_t>& choice) {
  const size_t G = p.groups.size();
  std::vector<double> pre(G + 1, 0.0), suf(G + 1, 0.0), out(G);
  for (size_t g = 0; g < G; ++g)
    pre[g + 1] = std::max(pre[g], p.groups[g].cost[static_cast<size_t>(choice[g])].act_bytes);
  for (size_t g = G; g-- > 0;)
    suf[g] = std::max(suf[g + 1], p.groups[g].cost[static_cast<size_t>(choice[g])].act_bytes);
  for (size_t g = 0; g < G; ++g) out[g] = std::max(pre[g], suf[g + 1]);
  return out;
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
    const bool vw = cur.weight_bytes > b.weight_bytes;
    const bool va = b.has_act() && cur.act_bytes > b.act_bytes;
    const bool vb = b.has_bops() && cur.bops > b.bops;
    auto others = act_others(p, d.choice);
    double best_score = std::numeric_limits<double>::infinity(), best_gain = 0;
    int64_t best_g = -1, best_c = -1;
    for (size_t g = 0; g < G; ++g) {
      const auto& grp = p.groups[g];
      const int64_t now = d.choice[g];
      const Cost& a = grp.cost[static_cast<size_t>(now)];
      for (int64_t c = 0; c < static_cast<int64_t>(grp.cost.size()); ++c) {
        if (c == now) continue;
        const Cost& n = grp.cost[static_cast<size_t>(c)];
        Cost t = switched(cur, grp, now, c, others[g]);
        double gain = 0;
        bool ok = true;
        // Savings count only up to the overshoot: a change that removes the whole violation is worth the
        // same whatever it frees beyond it, so a big layer does not win just by being big (it would strand
        // budget that the refill below cannot re-spend).
        if (vw) {
          if (n.weight_bytes > a.weight_bytes) ok = false;
          gain += std::min(a.weight_bytes - n.weight_bytes, cur.weight_bytes - b.weight_bytes) / b.weight_bytes;
        } else if (t.weight_bytes > b.weight_bytes) {
          ok = false;
        }
        if (va) {
          if (n.act_bytes > a.act_bytes) ok = false;
          if (a.act_bytes > b.act_bytes) gain += (a.act_bytes - std::max(n.act_bytes, b.act_bytes)) / b.act_bytes;
        } else if (b.has_act() && t.act_bytes > b.act_bytes) {
          ok = false;
        }
        if (vb) {
          if (n.bops > a.bops) ok = false;
          gain += std::min(a.bops - n.bops, cur.bops - b.bops) / b.bops;
        } else if (b.has_bops() && t.bops > b.bops) {
          ok = false;
        }
        if (!ok || !(gain > 0)) continue;
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
      throw InfeasibleBudget("no policy of the search space meets all budgets together (" + b.describe(p.num_weights) +
                                 "); the smallest costs taken one at a time are weights " +
                                 format_kib(minimum_cost(p).weight_bytes) + ", act footprint " +
                                 format_kib(minimum_cost(p).act_bytes) + ", " + format_bops(minimum_cost(p).bops) +
                                 ": relax one of the budgets",
                             minimum_cost(p));
    }
    d.choice[static_cast<size_t>(best_g)] = best_c;
    cur = total_cost(p, d.choice);
    ++d.downgrades;
  }

  // ---- refill: spend what is left on more probable options (each move raises the total probability).
  for (;;) {
    auto others = act_others(p, d.choice);
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
        double spend = std::max(0.0, n.weight_bytes - a.weight_bytes) / b.weight_bytes;
        if (b.has_act()) spend += std::max(0.0, n.act_bytes - a.act_bytes) / b.act_bytes;
        if (b.has_bops()) spend += std::max(0.0, n.bops - a.bops) / b.bops;
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
  d.cost = cur;

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

// ---------------------------------------------------------------- penalty
Cost ExpectedCost::values() const {
  Cost c;
  c.weight_bytes = weight_bytes.defined() ? weight_bytes.item<double>() : 0;
  c.act_bytes = act_bytes.defined() && act_bytes.numel() ? act_bytes.max().item<double>() : 0;
  c.bops = bops.defined() ? bops.item<double>() : 0;
  return c;
}

json PenaltyOptions::to_json() const {
  return {{"lambda_init", lambda_init}, {"eta", eta}, {"tol", tol}, {"lambda_min", lambda_min},
          {"lambda_max", lambda_max}};
}

torch::Tensor cost_penalty(const ExpectedCost& e, const Budgets& b, const Lambdas& l) {
  auto u = e.weight_bytes / b.weight_bytes - 1.0;
  torch::Tensor p = l.weight * u * u;
  if (b.has_act() && e.act_bytes.defined()) p = p + l.act * torch::relu(e.act_bytes / b.act_bytes - 1.0).pow(2).sum();
  if (b.has_bops() && e.bops.defined()) {
    auto v = torch::relu(e.bops / b.bops - 1.0);
    p = p + l.bops * v * v;
  }
  return p;
}

void adapt_lambdas(Lambdas& l, const Cost& e, const Budgets& b, const PenaltyOptions& o) {
  auto upd = [&](double& lam, double signal) {
    lam = std::clamp(lam * std::exp(o.eta * signal), o.lambda_min, o.lambda_max);
  };
  upd(l.weight, std::abs(e.weight_bytes / b.weight_bytes - 1.0) - o.tol);
  if (b.has_act()) upd(l.act, e.act_bytes / b.act_bytes - 1.0);
  if (b.has_bops()) upd(l.bops, e.bops / b.bops - 1.0);
}

}  // namespace autoqnn::search
