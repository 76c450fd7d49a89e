// `--method ilp`: sensitivity-based exact allocation (HAWQ-v3-style, over our schemes x bits; no supernet,
// no training). One analysis, then one exact solve per budget:
//
//   1. the sensitivity of every layer x (weight, act) candidate of the search space. By default
//      (--ilp-proxy auto) the Fisher proxy below; with --sensitivity FILE or --ilp-proxy accuracy the
//      table of autoqnn/sensitivity.h (each candidate with only that layer quantized): read from FILE
//      (`autoqnn analyze`), or measured here on the val split (--val-limit images; calibration from the
//      search-train split);
//   2. quality of a candidate = -(accuracy drop, clipped at 0) - 0.01 x the relative weight error
//      10^(-SQNR/10) (the second term breaks the ties of a saturated drop in favour of more precise
//      weights); a table made with --no-accuracy gives -relative error only;
//      --ilp-proxy hessian instead: quality = -Tr(H_l) / n_l x ||W_l - Q(W_l)||^2 (HAWQ-v2), the traces
//      by Hutchinson on train batches (autoqnn/hessian_trace.h), the weight errors without evaluation:
//      seconds instead of an evaluation per candidate; weight candidates only (one act per layer);
//      --ilp-proxy fisher: the same quality, the traces from the Fisher (one backward per draw, no double
//      backward; equal to the Hessian's layer blocks for ReLU / BatchNorm networks, hessian_trace.h);
//   3. per budget: the multiple-choice knapsack of allocation.h (DP for one Sum budget, GLPK for several),
//      then the budget fill (constraints.h fill_budget; a no-op at an exact optimum).
//
// Budgets: the usual flags (one policy), or a front: --budgets 1,1.25,1.5,2,3 (bits/weight) or
// --budgets-kib a,b,c, one policy per value (<out stem>.<value>bits.json / .<value>kib.json) plus
// <out stem>.front.csv; --bops / --act-budget-kib / --wa-bits W,A (the BOPs of uniform W-bit weights and
// A-bit activations on every layer) apply to every point. An infeasible budget names the minimum before any
// policy is written.
#pragma once
#include <string>
#include <vector>

#include "search/allocation.h"
#include "search/search_method.h"

namespace autoqnn::search {

struct IlpOptions : StrategyOptions {
  std::string sensitivity;               // CSV of `autoqnn analyze` ("" = measure)
  std::vector<double> budgets_bits;      // a front in bits/weight
  std::vector<double> budgets_kib;       // a front in KiB
  AllocSolver solver = AllocSolver::Auto;
  std::string proxy = "accuracy";        // the measured table | "hessian" | "fisher" (trace x weight error);
                                         // the CLI's "auto" is resolved by options_from_flags
  int64_t trace_batches = 0;             // hessian / fisher: train batches and draws per batch (0: the
  int64_t trace_samples = 0;             // estimator's default, autoqnn/hessian_trace.h)
  nlohmann::json to_json() const override;
  static IlpOptions from_json(const nlohmann::json& j);
};


// The method row of "ilp" (search_method.h).
SearchMethod ilp_method();

}  // namespace autoqnn::search
