// The supernet: a Model whose every quantizable layer holds MixedQuantizers over the candidates of a
// search space, plus the architecture logits theta (one vector per layer, or per shared group) over the
// joint (weight spec x act spec) candidates, Gumbel-softmax sampling, and the exact cost of every
// candidate.
//
//   pi = softmax(theta)                                  the architecture distribution (derivation, E[cost])
//   theta = theta_w (+) theta_a  (ArchLogits::Factored, opt-in): one logit per weight and per act candidate,
//     so pi = pi_w x pi_a and each step's gradient reaches every joint cell sharing its weight or act choice
//   y  = softmax((theta + g) / tau),  g ~ Gumbel(0, 1)   the mixing weights of one step
//   soft: mix = y;   hard: mix = onehot(argmax y) + (y - stop_grad(y))   (straight-through)
//   E[cost] = sum_c pi_c * cost_c   (= the expected cost of a Gumbel-max sample, independent of tau)
#pragma once
#include <torch/torch.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "search/constraints.h"
#include "search/mixed_quantizer.h"
#include "search/search_space.h"

namespace autoqnn::search {

enum class SamplingMode { Soft, Hard };
SamplingMode parse_sampling(const std::string& s);  // "soft" | "hard"; throws listing the valid ones
const char* sampling_name(SamplingMode m);

// How the joint logits of a group are parameterised. Joint: one free logit per (weight, act) pair.
// Factored: theta[w, a] = theta_w[w] + theta_a[a]; a group with a single weight or act candidate is the
// same either way and keeps the joint form (so weight-only searches and their states are unchanged).
enum class ArchLogits { Joint, Factored };
ArchLogits parse_arch_logits(const std::string& s);  // "joint" | "factored"; throws listing the valid ones
const char* arch_logits_name(ArchLogits a);

// tau(progress) for progress in [0, 1] over the search epochs.
struct TemperatureSchedule {
  double start = 5.0, end = 0.1;
  std::string kind = "exp";  // exp: start * (end/start)^t | linear | constant (= start)
  double at(double progress) const;
  void validate() const;  // throws std::invalid_argument naming the bad value
  nlohmann::json to_json() const;
};

// Exact costs (the core cost model) of every joint candidate of one layer: index = weight * |act| + act.
std::vector<Cost> candidate_costs(const LayerProfile& prof, const CandidateSet& cands);

struct SupernetLayer {
  std::string name;
  QuantLayer* layer = nullptr;
  LayerProfile profile;
  CandidateSet cands;
  std::vector<Cost> costs;  // candidate_costs
  int64_t group = 0;
  MixedQuantizerPtr wq, aq;
};

struct ArchGroup {
  std::string name;             // layer name (per-layer) | "shared" | "shared[<first layer>]"
  std::vector<int64_t> layers;  // indices into Supernet::layers()
  CandidateSet cands;
  torch::Tensor theta;          // Joint: [cands.size()] parameter; undefined when factored or not searched
  torch::Tensor theta_w, theta_a;  // Factored: [|weight|], [|act|] parameters
  ArchSamplePtr sample;
  bool factored() const { return theta_w.defined(); }
  // The joint logits [cands.size()] (index = weight * |act| + act), differentiable w.r.t. the parameters.
  torch::Tensor logits() const;
  // Sets the parameters from joint logits: Factored takes the least-squares fit (row means, column
  // means less the grand mean), exact when the joint logits are additive.
  void set_logits(const torch::Tensor& joint);
  int64_t size() const { return cands.size(); }
  bool searched() const { return size() > 1; }
};

class Supernet : public torch::nn::Module {
 public:
  // Profiles the model (one forward on a single image), resolves the space, installs a MixedQuantizer in
  // the weight and act slot of every QuantLayer and creates theta (zeros = uniform).
  Supernet(ModelPtr model, const SearchSpace& space, ArchLogits logits = ArchLogits::Joint);

  torch::Tensor forward(const torch::Tensor& x) { return model_->forward(x); }
  Model& model() { return *model_; }
  const ModelPtr& model_ptr() const { return model_; }
  const std::vector<SupernetLayer>& layers() const { return layers_; }
  const std::vector<ArchGroup>& groups() const { return groups_; }
  Granularity granularity() const { return granularity_; }
  int64_t num_weights() const { return num_weights_; }

  std::vector<torch::Tensor> arch_parameters() const;
  void set_logits(int64_t group, const torch::Tensor& joint) { groups_.at(static_cast<size_t>(group)).set_logits(joint); }
  // Every other parameter that requires grad (model weights, learned quantizer parameters).
  std::vector<torch::Tensor> weight_parameters();

  // ---- the architecture of the next forward passes
  // Draws y for every searched group. arch_grad = false detaches theta (weight steps). noise_seed makes
  // the Gumbel noise a pure function of the step (repeatable, resumable); gumbel = false uses theta / tau.
  void sample(SamplingMode mode, double tau, bool arch_grad, uint64_t noise_seed, bool gumbel = true);
  void fix(const std::vector<int64_t>& choice);  // one option per group (Fixed mode)
  void fix_argmax();
  std::vector<int64_t> argmax() const;
  void set_all_act_paths(bool on);
  void calibrate_next();  // every candidate quantizer calibrates on the next forward's input

  // ---- distributions and costs
  torch::Tensor probabilities(int64_t g) const;  // softmax(theta), float64 [size]; [1] when not searched
  ExpectedCost expected_cost() const;            // differentiable w.r.t. theta
  ChoiceProblem choice_problem() const;          // pi (detached) + exact costs per group
  double mean_entropy() const;                   // mean over searched groups of -sum pi log pi (nats)
  // (weight spec, act spec) of every layer for a choice per group, in layer order.
  std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>> layer_specs(const std::vector<int64_t>& choice) const;
  // {layer: [{"weight", "act", "p"}...]} with the group's pi.
  nlohmann::json probabilities_json() const;

 private:
  ModelPtr model_;
  Granularity granularity_;
  std::vector<SupernetLayer> layers_;
  std::vector<ArchGroup> groups_;
  int64_t num_weights_ = 0;
  std::shared_ptr<torch::nn::Module> arch_;  // holds the theta parameters ("arch.g<k>")
  // Per group and cost kind, the cost of every joint option (float64): a Sum kind summed over the group's
  // layers [n]; a Max kind per layer [L_g, n] (each layer's footprint is bounded on its own).
  std::vector<std::array<torch::Tensor, kNumCostKinds>> option_cost_;
};
using SupernetPtr = std::shared_ptr<Supernet>;

// Deterministic Gumbel(0, 1) noise from (seed, stream): splitmix64, independent of LibTorch's generators.
torch::Tensor gumbel_noise(int64_t n, uint64_t seed, uint64_t stream);
uint64_t mix_seed(uint64_t a, uint64_t b);

}  // namespace autoqnn::search
