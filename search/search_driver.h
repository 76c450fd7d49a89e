// The search driver: ONE loop shared by every search method. A method is a SearchStrategy (QSS: scheme
// probabilities over a supernet, search/qss.h; QPL: learned bitwidths, a later strategy) and the driver
// does the rest:
//
//   FP32 checkpoint -> strategy -> feasibility check -> calibration
//   warm-up epochs: weight steps only (train split)
//   search epochs:  per step, first-order bilevel: a weight step (SGD, train split), then an architecture
//                   step (Adam, val split) on CE + lambda . penalty(E[cost] vs budget) (constraints.h)
//   every epoch:    validation of the derived (argmax) architecture, progress line, CSV log,
//                   atomic search-state checkpoint (kind "search-state": weights, theta, quantizer state,
//                   both optimisers, lambdas, history)
//   end:            derive (argmax + repair) -> policy JSON with provenance
//
// `--from-state` re-derives a policy from a saved state for another budget without searching.
#pragma once
#include <torch/torch.h>

#include <functional>
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

namespace autoqnn::search {

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
  virtual nlohmann::json config_json() const = 0;   // options to rebuild the strategy from a state
  // Method-specific state worth recording per epoch and in the policy provenance (QPL: the learned
  // continuous bitwidths); null = nothing.
  virtual nlohmann::json learned_json() { return nullptr; }
};

using ModelFactory = std::function<ModelPtr(const std::string& name, const ModelConfig& cfg)>;
// method "qss" | "qpl" (more strategies register here). Throws std::invalid_argument listing the methods.
// ("qss+qpl" is not one strategy but two searches in a row: run_qss_qpl in search/qpl.h.)
std::unique_ptr<SearchStrategy> make_strategy(const std::string& method, ModelPtr model, const SearchSpace& space,
                                              const nlohmann::json& strategy_options);
std::vector<std::string> search_methods();

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
  nlohmann::json strategy = nlohmann::json::object();  // e.g. {"sampling": "soft", "tau_start": 5, ...}
  PenaltyOptions penalty;

  // budgets (constraints.h make_budgets)
  std::optional<double> budget_kib, avg_bits;
  double act_budget_kib = 0, bops = 0;

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
  std::optional<double> budget_kib, avg_bits;
  double act_budget_kib = 0, bops = 0;
  std::string out;
  std::string command_line;
  ModelFactory model_factory;
};
// Rebuilds the strategy from the state file, derives for the new budgets and writes the policy.
SearchResult rederive_from_state(const RederiveOptions& opt);

std::string default_state_path(const std::string& out);

}  // namespace autoqnn::search
