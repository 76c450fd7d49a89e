// The search driver: ONE loop shared by every search method. It knows no method by name: the row of
// opt.method in the method table (search_method.h) builds a SearchStrategy (search_strategy.h) from the
// typed options, and the driver does the rest:
//
//   FP32 checkpoint -> strategy -> feasibility check -> calibration
//   warm-up epochs: weight steps only (train split)
//   search epochs:  per step, first-order bilevel: a weight step (SGD, train split), then an architecture
//                   step (Adam, val split) on CE + lambda . penalty(E[cost] vs budget) (constraints.h)
//   every epoch:    validation of the derived (argmax) architecture, progress line, CSV log,
//                   atomic search-state checkpoint (kind "search-state": weights, theta, quantizer state,
//                   both optimisers, lambdas, history)
//   end:            finish_search: derive (argmax + repair + refill) -> policy JSON with provenance
//
// `--from-state` re-derives a policy from a saved state for another budget without searching.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "search/arch_optimizer.h"
#include "search/constraints.h"
#include "search/search_space.h"
#include "search/search_strategy.h"

namespace autoqnn::search {

using ModelFactory = std::function<ModelPtr(const std::string& name, const ModelConfig& cfg)>;
struct SearchOptions {
  std::string method = "qss";
  std::string model;       // zoo name (must match the checkpoint)
  std::string checkpoint;  // FP32 checkpoint to start from
  std::string space_path = "configs/search_space/default.json";
  DataOptions data;
  int64_t batch_size = 128;
  int epochs = 10;  // search epochs (architecture updated)
  int warmup = 2;   // weight-only epochs before them
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;

  // weights: SGD with cosine decay over warm-up + search
  double lr = 0.01, momentum = 0.9, weight_decay = 5e-4;
  // architecture
  ArchAdamOptions arch;
  StrategyOptionsPtr strategy;  // the method's typed options (null = its defaults)
  PenaltyOptions penalty;

  // budgets, by flag (constraints.h make_budgets): {"--avg-bits": 2}, {"--budget-kib": 40, "--bops": 1e9}
  std::map<std::string, double> budgets;

  std::string out;    // policy JSON
  std::string state;  // search state (default: <out without .json>.state.pt)
  std::string log;    // CSV log (optional)
  bool resume = false;
  int64_t calib_batches = 2;
  int64_t max_steps_per_epoch = 0;  // 0 = a full pass over the train split
  int64_t val_eval_limit = 0;       // images of the val split used for the epoch's accuracy (0 = all)
  std::string command_line;
  // Testing hook: return right after the state of this (1-based) epoch is saved (a simulated kill).
  int stop_after_epoch = 0;
  ModelFactory model_factory;  // default: make_model
};

struct SearchResult {
  Policy policy;
  Derivation derivation;
  Cost expected;         // E[cost] at the end
  double val_top1 = -1;  // of the derived architecture before repair (-1 when not evaluated)
  int epochs_done = 0;
  bool stopped = false;  // stop_after_epoch hit: no policy written
};

SearchResult run_search(const SearchOptions& opt);

struct RederiveOptions {
  std::string state;
  std::map<std::string, double> budgets;  // as SearchOptions::budgets
  std::string out;
  std::string command_line;
  ModelFactory model_factory;
};
// Rebuilds the strategy from the state file, derives for the new budgets and writes the policy.
SearchResult rederive_from_state(const RederiveOptions& opt);

std::string default_state_path(const std::string& out);

// The one finish step of every search: derive (argmax + repair + refill) from the strategy's choice problem,
// build the policy on a fresh model, add the derivation, expected cost and probabilities to `provenance`,
// write the policy atomically and log one line. `how` names the run in that line.
struct FinishStep {
  ModelFactory factory;
  std::string model;
  ModelConfig config;
  Budgets budgets;
  nlohmann::json provenance;  // the run's own keys (method, command, seed, ...)
  std::string out;
  std::string how;            // "searched" | "re-derived from <state>"
};
SearchResult finish_search(SearchStrategy& strat, const FinishStep& f);
// Writes a searched policy with its provenance (atomically) and logs it: the last step of every method.
void save_searched_policy(const std::string& out, Policy& policy, nlohmann::json provenance);

}  // namespace autoqnn::search
