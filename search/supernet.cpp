#include "search/supernet.h"

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "quantizers/registry.h"

namespace autoqnn::search {

using nlohmann::json;
using quant::QuantSpec;
using quant::Role;

SamplingMode parse_sampling(const std::string& s) {
  if (s == "soft") return SamplingMode::Soft;
  if (s == "hard" || s == "st" || s == "straight-through") return SamplingMode::Hard;
  throw std::invalid_argument("unknown sampling '" + s + "' (valid: soft, hard)");
}
const char* sampling_name(SamplingMode m) { return m == SamplingMode::Soft ? "soft" : "hard"; }

ArchLogits parse_arch_logits(const std::string& s) {
  if (s == "joint") return ArchLogits::Joint;
  if (s == "factored") return ArchLogits::Factored;
  throw std::invalid_argument("unknown arch logits '" + s + "' (valid: factored, joint)");
}
const char* arch_logits_name(ArchLogits a) { return a == ArchLogits::Joint ? "joint" : "factored"; }

// ---------------------------------------------------------------- logits
torch::Tensor ArchGroup::logits() const {
  if (!factored()) return theta;
  return (theta_w.unsqueeze(1) + theta_a.unsqueeze(0)).reshape({-1});
}

void ArchGroup::set_logits(const torch::Tensor& joint) {
  torch::NoGradGuard ng;
  TORCH_CHECK(joint.numel() == size(), "ArchGroup::set_logits: ", joint.numel(), " logits for ", size(), " options");
  if (!factored()) {
    theta.copy_(joint.to(theta.options()).reshape({-1}));
    return;
  }
  auto m = joint.to(torch::kFloat64).reshape({theta_w.size(0), theta_a.size(0)});
  auto rows = m.mean(1), cols = m.mean(0);
  theta_w.copy_(rows.to(theta_w.options()));
  theta_a.copy_((cols - m.mean()).to(theta_a.options()));
}

// ---------------------------------------------------------------- temperature
double TemperatureSchedule::at(double t) const {
  t = std::min(1.0, std::max(0.0, t));
  if (kind == "constant") return start;
  if (kind == "linear") return start + (end - start) * t;
  return start * std::pow(end / start, t);  // exp
}

void TemperatureSchedule::validate() const {
  if (!(start > 0) || !std::isfinite(start))
    throw std::invalid_argument("--tau-start must be a positive number, got " + std::to_string(start));
  if (!(end > 0) || !std::isfinite(end))
    throw std::invalid_argument("--tau-end must be a positive number, got " + std::to_string(end));
  if (kind != "exp" && kind != "linear" && kind != "constant")
    throw std::invalid_argument("unknown --tau-schedule '" + kind + "' (valid: exp, linear, constant)");
}

json TemperatureSchedule::to_json() const { return {{"start", start}, {"end", end}, {"schedule", kind}}; }

// ---------------------------------------------------------------- noise
uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9E3779B97F4A7C15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

torch::Tensor gumbel_noise(int64_t n, uint64_t seed, uint64_t stream) {
  auto out = torch::empty({n}, torch::kFloat32);
  float* p = out.data_ptr<float>();
  uint64_t state = mix_seed(seed, stream);
  for (int64_t i = 0; i < n; ++i) {
    state = mix_seed(state, static_cast<uint64_t>(i));
    double u = static_cast<double>(state >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    u = std::min(std::max(u, 1e-12), 1.0 - 1e-12);
    p[i] = static_cast<float>(-std::log(-std::log(u)));
  }
  return out;
}

// ---------------------------------------------------------------- costs
std::vector<Cost> candidate_costs(const LayerProfile& prof, const CandidateSet& cands) {
  const LayerDims dims = layer_dims(prof);
  std::vector<Cost> out;
  for (const auto& w : cands.weight)
    for (const auto& a : cands.act) out.push_back(layer_cost(dims, w, a));
  return out;
}

// ---------------------------------------------------------------- construction
namespace {
bool single_fp(const std::vector<QuantSpec>& v) { return v.size() == 1 && v[0].is_fp(); }
}  // namespace

Supernet::Supernet(ModelPtr model, const SearchSpace& space, ArchLogits logits)
    : model_(std::move(model)), granularity_(space.granularity) {
  if (!model_) throw std::invalid_argument("Supernet: no model");
  register_module("model", model_);
  // Facts first, on the float model (no quantizer installed yet).
  std::vector<LayerProfile> prof = profile_model(*model_);
  auto named = quant_layers(*model_);
  if (named.empty()) throw std::invalid_argument("Supernet: model '" + model_->name() + "' has no quantizable layer");
  std::map<std::string, LayerProfile> by_name;
  for (auto& p : prof) by_name[p.name] = p;
  std::vector<std::string> names;
  for (auto& n : named) names.push_back(n.name);
  std::vector<CandidateSet> sets = space.resolve(names);

  for (size_t i = 0; i < named.size(); ++i) {
    SupernetLayer L;
    L.name = named[i].name;
    L.layer = named[i].layer;
    auto it = by_name.find(L.name);
    if (it == by_name.end()) throw std::logic_error("Supernet: profile_model missed layer '" + L.name + "'");
    L.profile = it->second;
    L.cands = sets[i];
    try {
      L.costs = candidate_costs(L.profile, L.cands);
    } catch (const std::exception& e) {
      throw std::invalid_argument("layer '" + L.name + "': " + e.what());
    }
    num_weights_ += L.profile.params;
    layers_.push_back(std::move(L));
  }

  // Groups: one per layer, or one per distinct candidate set (normally one for the whole model).
  std::map<std::string, int64_t> by_sig;
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto& L = layers_[i];
    int64_t g = -1;
    if (granularity_ == Granularity::Shared) {
      auto sig = L.cands.signature();
      auto f = by_sig.find(sig);
      if (f != by_sig.end()) g = f->second;
      else {
        g = static_cast<int64_t>(groups_.size());
        by_sig[sig] = g;
      }
    } else {
      g = static_cast<int64_t>(groups_.size());
    }
    if (g == static_cast<int64_t>(groups_.size())) {
      ArchGroup G;
      G.cands = L.cands;
      if (granularity_ == Granularity::Shared)
        G.name = L.cands == space.base ? "shared" : "shared[" + L.name + "]";
      else
        G.name = L.name;
      G.sample = std::make_shared<ArchSample>();
      groups_.push_back(std::move(G));
    }
    L.group = g;
    groups_[static_cast<size_t>(g)].layers.push_back(static_cast<int64_t>(i));
  }

  arch_ = register_module("arch", std::make_shared<torch::nn::Module>());
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto& G = groups_[g];
    const int64_t nw = static_cast<int64_t>(G.cands.weight.size()), na = static_cast<int64_t>(G.cands.act.size());
    if (G.searched() && logits == ArchLogits::Factored && nw > 1 && na > 1) {
      G.theta_w = arch_->register_parameter("g" + std::to_string(g) + "w", torch::zeros({nw}));
      G.theta_a = arch_->register_parameter("g" + std::to_string(g) + "a", torch::zeros({na}));
    } else if (G.searched()) {
      G.theta = arch_->register_parameter("g" + std::to_string(g), torch::zeros({G.size()}));
    }
    // cost vectors over the joint options
    const int64_t n = G.size(), nl = static_cast<int64_t>(G.layers.size());
    std::array<torch::Tensor, kNumCostKinds> oc;
    for (const auto& k : cost_kinds()) {
      const bool per_layer = k.combine == Combine::Max;
      auto t = per_layer ? torch::zeros({nl, n}, torch::kFloat64) : torch::zeros({n}, torch::kFloat64);
      for (int64_t l = 0; l < nl; ++l) {
        const auto& L = layers_[static_cast<size_t>(G.layers[static_cast<size_t>(l)])];
        for (int64_t c = 0; c < n; ++c) {
          const double v = L.costs[static_cast<size_t>(c)].at(k.kind);
          if (per_layer) t[l][c] = v;
          else t[c] += v;
        }
      }
      oc[static_cast<size_t>(k.kind)] = t;
    }
    option_cost_.push_back(oc);
  }

  // Install the mixed quantizers.
  for (auto& L : layers_) {
    auto& G = groups_[static_cast<size_t>(L.group)];
    try {
      if (!single_fp(L.cands.weight)) {
        L.wq = MixedQuantizer::make(Role::Weight, L.cands.weight, G.sample);
        L.layer->set_weight_quantizer(L.wq);
      }
      if (!single_fp(L.cands.act)) {
        L.aq = MixedQuantizer::make(Role::Activation, L.cands.act, G.sample);
        L.layer->set_act_quantizer(L.aq);
      }
    } catch (const std::exception& e) {
      throw std::invalid_argument("layer '" + L.name + "': cannot build its candidate quantizers: " + e.what());
    }
  }
  fix_argmax();
}

std::vector<torch::Tensor> Supernet::arch_parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& G : groups_) {
    if (G.factored()) {
      out.push_back(G.theta_w);
      out.push_back(G.theta_a);
    } else if (G.searched()) {
      out.push_back(G.theta);
    }
  }
  return out;
}

std::vector<torch::Tensor> Supernet::weight_parameters() {
  std::set<const void*> arch;
  for (const auto& t : arch_parameters()) arch.insert(t.unsafeGetTensorImpl());
  std::vector<torch::Tensor> out;
  for (const auto& p : parameters(/*recurse=*/true))
    if (p.requires_grad() && !arch.count(p.unsafeGetTensorImpl())) out.push_back(p);
  return out;
}

// ---------------------------------------------------------------- sampling
void Supernet::sample(SamplingMode mode, double tau, bool arch_grad, uint64_t noise_seed, bool gumbel) {
  TORCH_CHECK(tau > 0, "Supernet::sample: temperature must be positive");
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto& G = groups_[g];
    auto& s = *G.sample;
    if (!G.searched()) {
      s.mode = ArchSample::Mode::Fixed;
      s.w_index = s.a_index = 0;
      s.w_mix = s.a_mix = torch::Tensor();
      continue;
    }
    const int64_t nw = static_cast<int64_t>(G.cands.weight.size()), na = static_cast<int64_t>(G.cands.act.size());
    torch::Tensor th = arch_grad ? G.logits() : G.logits().detach();
    torch::Tensor logits = th;
    if (gumbel) logits = logits + gumbel_noise(G.size(), noise_seed, g).to(th.device());
    torch::Tensor y = torch::softmax(logits / tau, 0);
    torch::Tensor joint;
    int64_t k = y.argmax().item<int64_t>();
    if (mode == SamplingMode::Soft) {
      joint = y;
      s.mode = ArchSample::Mode::Soft;
    } else {
      auto onehot = torch::zeros_like(y);
      onehot[k] = 1.0;
      joint = arch_grad ? onehot + (y - y.detach()) : onehot;  // value exactly one-hot
      s.mode = ArchSample::Mode::Hard;
    }
    auto jv = joint.view({nw, na});
    s.w_mix = jv.sum(1);
    s.a_mix = jv.sum(0);
    s.w_index = k / na;
    s.a_index = k % na;
  }
}

void Supernet::fix(const std::vector<int64_t>& choice) {
  TORCH_CHECK(choice.size() == groups_.size(), "Supernet::fix: ", choice.size(), " choices for ", groups_.size(),
              " groups");
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto& G = groups_[g];
    auto& s = *G.sample;
    TORCH_CHECK(choice[g] >= 0 && choice[g] < G.size(), "Supernet::fix: option out of range for ", G.name);
    const int64_t na = static_cast<int64_t>(G.cands.act.size());
    s.mode = ArchSample::Mode::Fixed;
    s.w_mix = s.a_mix = torch::Tensor();
    s.w_index = choice[g] / na;
    s.a_index = choice[g] % na;
  }
}

std::vector<int64_t> Supernet::argmax() const {
  std::vector<int64_t> out;
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto p = probabilities(static_cast<int64_t>(g));
    auto a = p.accessor<double, 1>();
    int64_t best = 0;
    for (int64_t c = 1; c < p.size(0); ++c)
      if (a[c] > a[best]) best = c;  // ties: the first option (as derive())
    out.push_back(best);
  }
  return out;
}

void Supernet::fix_argmax() { fix(argmax()); }

void Supernet::set_all_act_paths(bool on) {
  for (auto& G : groups_) G.sample->all_act_paths = on;
}

void Supernet::calibrate_next() {
  for (auto& L : layers_) {
    if (L.wq) L.wq->calibrate_next = true;
    if (L.aq) L.aq->calibrate_next = true;
  }
}

// ---------------------------------------------------------------- distributions and costs
torch::Tensor Supernet::probabilities(int64_t g) const {
  const auto& G = groups_.at(static_cast<size_t>(g));
  if (!G.searched()) return torch::ones({1}, torch::kFloat64);
  torch::NoGradGuard ng;
  return torch::softmax(G.logits().detach().to(torch::kCPU, torch::kFloat64), 0);
}

ExpectedCost Supernet::expected_cost() const {
  torch::Device dev = torch::kCPU;
  for (const auto& G : groups_)
    if (G.searched()) dev = G.logits().device();
  std::array<std::vector<torch::Tensor>, kNumCostKinds> parts;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto& G = groups_[g];
    torch::Tensor pi = G.searched() ? torch::softmax(G.logits().to(torch::kFloat64), 0)
                                    : torch::ones({1}, torch::dtype(torch::kFloat64).device(dev));
    for (const auto& k : cost_kinds()) {
      const torch::Tensor v = option_cost_[g][static_cast<size_t>(k.kind)].to(dev);
      parts[static_cast<size_t>(k.kind)].push_back(k.combine == Combine::Max ? torch::matmul(v, pi) : (pi * v).sum());
    }
  }
  ExpectedCost e;
  for (const auto& k : cost_kinds()) {
    auto& v = parts[static_cast<size_t>(k.kind)];
    e.at(k.kind) = k.combine == Combine::Max ? torch::cat(v) : torch::stack(v).sum();
  }
  return e;
}

ChoiceProblem Supernet::choice_problem() const {
  ChoiceProblem p;
  p.num_weights = num_weights_;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto& G = groups_[g];
    ChoiceGroup cg;
    cg.name = G.name;
    auto pi = probabilities(static_cast<int64_t>(g));
    auto pa = pi.accessor<double, 1>();
    for (int64_t li : G.layers) cg.layers.push_back(layers_[static_cast<size_t>(li)].name);
    for (int64_t c = 0; c < G.size(); ++c) {
      cg.labels.push_back(G.cands.label(c));
      cg.prob.push_back(pa[c]);
      Cost tot;
      for (int64_t li : G.layers) tot.combine(layers_[static_cast<size_t>(li)].costs[static_cast<size_t>(c)]);
      cg.cost.push_back(tot);
    }
    p.groups.push_back(std::move(cg));
  }
  return p;
}

double Supernet::mean_entropy() const {
  double sum = 0;
  int n = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!groups_[g].searched()) continue;
    auto p = probabilities(static_cast<int64_t>(g));
    sum += -(p * torch::log(p.clamp_min(1e-300))).sum().item<double>();
    ++n;
  }
  return n ? sum / n : 0.0;
}

std::vector<std::pair<QuantSpec, QuantSpec>> Supernet::layer_specs(const std::vector<int64_t>& choice) const {
  TORCH_CHECK(choice.size() == groups_.size(), "Supernet::layer_specs: wrong number of choices");
  std::vector<std::pair<QuantSpec, QuantSpec>> out;
  for (const auto& L : layers_) {
    const auto& G = groups_[static_cast<size_t>(L.group)];
    int64_t c = choice[static_cast<size_t>(L.group)];
    out.emplace_back(G.cands.weight.at(static_cast<size_t>(G.cands.weight_index(c))),
                     G.cands.act.at(static_cast<size_t>(G.cands.act_index(c))));
  }
  return out;
}

json Supernet::probabilities_json() const {
  json j = json::object();
  for (const auto& L : layers_) {
    const auto& G = groups_[static_cast<size_t>(L.group)];
    auto pi = probabilities(L.group);
    auto pa = pi.accessor<double, 1>();
    json arr = json::array();
    for (int64_t c = 0; c < G.size(); ++c)
      arr.push_back({{"weight", G.cands.weight[static_cast<size_t>(G.cands.weight_index(c))].to_string()},
                     {"act", G.cands.act[static_cast<size_t>(G.cands.act_index(c))].to_string()},
                     {"p", pa[c]}});
    j[L.name] = arr;
  }
  return j;
}

}  // namespace autoqnn::search
