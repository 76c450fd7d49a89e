#include "search/qpl.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>

#include "autoqnn/act_stats.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/option_fields.h"
#include "autoqnn/runtime.h"
#include "quantizers/registry.h"
#include "search/search_driver.h"

namespace autoqnn::search {

using nlohmann::json;
using quant::QuantSpec;
using quant::Role;

// ---------------------------------------------------------------- options
namespace {
const OptionFields<QplOptions>& qpl_fields() {
  using F = OptionFields<QplOptions>;
  static const F f = F("qpl")
      .member("weight", &QplOptions::weight)
      .member("act", &QplOptions::act)
      .field("layers", [](const QplOptions& o) { return o.layers; },
             [](QplOptions& o, const json& v) {
               if (!v.is_object())
                 throw std::invalid_argument("qpl option 'layers' must be an object {layer: {weight, act}}");
               o.layers = v;
             })
      .member("bits_min", &QplOptions::bits_min)
      .member("bits_max", &QplOptions::bits_max)
      .member("act_bits_min", &QplOptions::act_bits_min)
      .member("act_bits_max", &QplOptions::act_bits_max)
      .member("init_bits", &QplOptions::init_bits)
      .member("init_act_bits", &QplOptions::init_act_bits)
      .member("snap_sigma", &QplOptions::snap_sigma)
      .member("source", &QplOptions::source);
  return f;
}
}  // namespace

QplOptions QplOptions::from_json(const json& j) {
  QplOptions o = qpl_fields().from_json(j);
  o.validate();
  return o;
}

json QplOptions::to_json() const { return qpl_fields().to_json(*this); }

void QplOptions::validate() const {
  if (bits_min < 1 || bits_max < bits_min)
    throw std::invalid_argument("QPL weight bit range [" + std::to_string(bits_min) + ", " + std::to_string(bits_max) +
                                "] is empty or below 1 (--bits-min / --bits-max)");
  if (act_bits_min < 1 || act_bits_max < act_bits_min)
    throw std::invalid_argument("QPL activation bit range [" + std::to_string(act_bits_min) + ", " +
                                std::to_string(act_bits_max) + "] is empty or below 1 (--act-bits-min / --act-bits-max)");
  if (!(init_bits >= 0) || !std::isfinite(init_bits))
    throw std::invalid_argument("--init-bits must be >= 0 (0 = each scheme's own bits)");
  if (!(init_act_bits >= 0) || !std::isfinite(init_act_bits))
    throw std::invalid_argument("init_act_bits must be >= 0 (0 = each scheme's own bits)");
  if (!(snap_sigma > 0) || !std::isfinite(snap_sigma)) throw std::invalid_argument("qpl option 'snap_sigma' must be > 0");
  for (auto it = layers.begin(); it != layers.end(); ++it) {
    if (!it.value().is_object()) throw std::invalid_argument("qpl layers." + it.key() + " must be an object");
    for (auto f = it.value().begin(); f != it.value().end(); ++f)
      if ((f.key() != "weight" && f.key() != "act") || !f.value().is_string())
        throw std::invalid_argument("qpl layers." + it.key() + "." + f.key() +
                                    ": expected \"weight\" / \"act\" spec strings");
  }
}

json qpl_layers_from_policy(const Policy& p) {
  json j = json::object();
  for (const auto& l : p.layers) j[l.name] = {{"weight", l.weight.to_string()}, {"act", l.act.to_string()}};
  return j;
}

// ---------------------------------------------------------------- pseudo-probabilities
std::vector<double> snap_probabilities(const std::vector<int>& options, double b, double sigma) {
  std::vector<double> p(options.size(), 1.0);
  if (options.size() <= 1) return p;
  double best = 1e300;
  for (int v : options) best = std::min(best, (b - v) * (b - v));
  double sum = 0;
  for (size_t k = 0; k < options.size(); ++k) {
    const double d2 = (b - options[k]) * (b - options[k]);
    p[k] = std::exp(-(d2 - best) / (2.0 * sigma * sigma));  // shifted: the nearest option has weight 1
    sum += p[k];
  }
  for (auto& v : p) v /= sum;
  return p;
}

// ---------------------------------------------------------------- the network
namespace {

QuantSpec checked_spec(const std::string& text, Role role, const std::string& where) {
  try {
    QuantSpec s = QuantSpec::parse(text);
    if (s.is_fp()) return QuantSpec::parse("fp32");
    return quant::validate_spec(s, role);
  } catch (const std::exception& e) {
    throw std::invalid_argument(where + ": '" + text + "': " + e.what());
  }
}

// Valid bitwidths of the spec's scheme inside [lo, hi]; {32} for fp32.
std::vector<int> options_of(const QuantSpec& s, Role role, int lo, int hi, const std::string& where) {
  if (s.is_fp()) return {32};
  std::vector<int> all = quant::valid_bits(s, role), out;
  for (int b : all)
    if (b >= lo && b <= hi) out.push_back(b);
  if (out.empty()) {
    std::string v;
    for (int b : all) v += (v.empty() ? "" : ",") + std::to_string(b);
    throw std::invalid_argument(where + ": scheme '" + s.scheme + "' has no valid bitwidth in [" + std::to_string(lo) +
                                ", " + std::to_string(hi) + "] (its valid bits: " + v + ")");
  }
  return out;
}

QuantSpec with_bits(QuantSpec s, int bits) {
  if (!s.is_fp()) s.bits = bits;
  return s;
}

}  // namespace

QplNet::QplNet(ModelPtr model, const QplOptions& opt) : model_(std::move(model)) {
  if (!model_) throw std::invalid_argument("QPL: no model");
  opt.validate();
  register_module("model", model_);
  std::vector<LayerProfile> prof = profile_model(*model_);
  auto named = quant_layers(*model_);
  if (named.empty()) throw std::invalid_argument("QPL: model '" + model_->name() + "' has no quantizable layer");
  std::map<std::string, LayerProfile> by_name;
  for (auto& p : prof) by_name[p.name] = p;
  std::set<std::string> names;
  std::string all_names;
  for (auto& n : named) {
    names.insert(n.name);
    all_names += (all_names.empty() ? "" : ", ") + n.name;
  }
  for (auto it = opt.layers.begin(); it != opt.layers.end(); ++it)
    if (!names.count(it.key()))
      throw std::invalid_argument("QPL schemes: unknown layer '" + it.key() + "' (layers of " + model_->name() + ": " +
                                  all_names + ")");

  for (auto& n : named) {
    QplLayer L;
    L.name = n.name;
    L.layer = n.layer;
    auto it = by_name.find(L.name);
    if (it == by_name.end()) throw std::logic_error("QPL: profile_model missed layer '" + L.name + "'");
    L.profile = it->second;
    std::string wtext = opt.weight, atext = opt.act;
    if (opt.layers.contains(L.name)) {
      const json& e = opt.layers[L.name];
      if (e.contains("weight")) wtext = e["weight"].get<std::string>();
      if (e.contains("act")) atext = e["act"].get<std::string>();
    }
    if (wtext.empty())
      throw std::invalid_argument("QPL: no weight scheme for layer '" + L.name +
                                  "' (give --qpl-scheme SPEC or a --qpl-policy covering every layer)");
    const std::string where = "layer '" + L.name + "'";
    L.weight_spec = checked_spec(wtext, Role::Weight, where + " weight");
    L.act_spec = checked_spec(atext.empty() ? "fp32" : atext, Role::Activation, where + " act");
    L.wbits = options_of(L.weight_spec, Role::Weight, opt.bits_min, opt.bits_max, where + " weight");
    L.abits = options_of(L.act_spec, Role::Activation, opt.act_bits_min, opt.act_bits_max, where + " act");
    const LayerDims dims = layer_dims(L.profile);
    for (int wb : L.wbits)
      for (int ab : L.abits) L.costs.push_back(layer_cost(dims, with_bits(L.weight_spec, wb), with_bits(L.act_spec, ab)));
    try {
      if (!L.weight_spec.is_fp()) {
        double init = opt.init_bits > 0 ? opt.init_bits : L.weight_spec.bits;
        QuantSpec s = with_bits(L.weight_spec, L.wbits.front());
        L.wq = std::make_shared<LearnedBitQuantizer>(quant::make_quantizer(s, Role::Weight), L.wbits, init);
        L.layer->set_weight_quantizer(L.wq);
      }
      if (!L.act_spec.is_fp()) {
        double init = opt.init_act_bits > 0 ? opt.init_act_bits : L.act_spec.bits;
        QuantSpec s = with_bits(L.act_spec, L.abits.front());
        L.aq = std::make_shared<LearnedBitQuantizer>(quant::make_quantizer(s, Role::Activation), L.abits, init);
        L.layer->set_act_quantizer(L.aq);
      }
    } catch (const std::exception& e) {
      throw std::invalid_argument(where + ": cannot build its learned-bit quantizers: " + e.what());
    }
    num_weights_ += L.profile.params;
    layers_.push_back(std::move(L));
  }
  fix_nearest();
}

std::vector<torch::Tensor> QplNet::bit_parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& L : layers_) {
    if (L.wq && L.wq->learned()) out.push_back(L.wq->bit_logit());
    if (L.aq && L.aq->learned()) out.push_back(L.aq->bit_logit());
  }
  return out;
}

std::vector<torch::Tensor> QplNet::weight_parameters() {
  std::set<const void*> bits;
  for (const auto& t : bit_parameters()) bits.insert(t.unsafeGetTensorImpl());
  std::vector<torch::Tensor> out;
  for (const auto& p : parameters(/*recurse=*/true))
    if (p.requires_grad() && !bits.count(p.unsafeGetTensorImpl())) out.push_back(p);
  return out;
}

void QplNet::set_continuous(bool bit_grad) {
  for (auto& L : layers_) {
    if (L.wq) L.wq->set_continuous(bit_grad);
    if (L.aq) L.aq->set_continuous(bit_grad);
  }
}

void QplNet::fix_nearest() {
  for (auto& L : layers_) {
    if (L.wq) L.wq->set_fixed(L.wq->nearest());
    if (L.aq) L.aq->set_fixed(L.aq->nearest());
  }
}

void QplNet::calibrate_next() {
  for (auto& L : layers_) {
    if (L.wq) L.wq->calibrate_next = true;
    if (L.aq) L.aq->calibrate_next = true;
  }
}

// Size(b), Mem_l(b), BOPs(b): the exact option costs interpolated by the quantizers' own interpolation
// weights (a joint option weighs w_i * a_j), so every cost is exact at every valid bitwidth.
ExpectedCost QplNet::expected_cost() const {
  torch::Device dev = torch::kCPU;
  for (const auto& t : bit_parameters()) dev = t.device();
  auto one = torch::ones({1}, torch::dtype(torch::kFloat64).device(dev));
  std::array<std::vector<torch::Tensor>, kNumCostKinds> parts;
  for (const auto& L : layers_) {
    torch::Tensor ww = L.wq && L.wq->learned() ? L.wq->interp_weights(true) : one;
    torch::Tensor aw = L.aq && L.aq->learned() ? L.aq->interp_weights(true) : one;
    const auto joint = torch::outer(ww, aw).reshape({-1});
    for (const auto& k : cost_kinds()) {
      std::vector<double> v;
      for (const auto& c : L.costs) v.push_back(c.at(k.kind));
      parts[static_cast<size_t>(k.kind)].push_back((joint * torch::tensor(v, torch::kFloat64).to(dev)).sum());
    }
  }
  ExpectedCost e;
  for (const auto& k : cost_kinds()) {
    auto s = torch::stack(parts[static_cast<size_t>(k.kind)]);
    e.at(k.kind) = k.combine == Combine::Max ? s : s.sum();
  }
  return e;
}

namespace {
std::vector<double> probs_of(const LearnedBitQuantizerPtr& q, const std::vector<int>& options, double sigma) {
  if (!q) return std::vector<double>(options.size(), 1.0 / static_cast<double>(options.size()));
  return snap_probabilities(options, q->bits_value(), sigma);
}
}  // namespace

ChoiceProblem QplNet::choice_problem(double sigma) const {
  ChoiceProblem p;
  p.num_weights = num_weights_;
  for (const auto& L : layers_) {
    ChoiceGroup g;
    g.name = L.name;
    g.layers = {L.name};
    auto pw = probs_of(L.wq, L.wbits, sigma), pa = probs_of(L.aq, L.abits, sigma);
    for (size_t i = 0; i < L.wbits.size(); ++i)
      for (size_t j = 0; j < L.abits.size(); ++j) {
        g.labels.push_back(with_bits(L.weight_spec, L.wbits[i]).to_string() + " / " +
                           with_bits(L.act_spec, L.abits[j]).to_string());
        g.prob.push_back(pw[i] * pa[j]);
        g.cost.push_back(L.costs[i * L.abits.size() + j]);
      }
    p.groups.push_back(std::move(g));
  }
  return p;
}

std::vector<std::pair<QuantSpec, QuantSpec>> QplNet::layer_specs(const std::vector<int64_t>& choice) const {
  TORCH_CHECK(choice.size() == layers_.size(), "QplNet::layer_specs: ", choice.size(), " choices for ", layers_.size(),
              " layers");
  std::vector<std::pair<QuantSpec, QuantSpec>> out;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& L = layers_[l];
    const int64_t na = static_cast<int64_t>(L.abits.size());
    const int64_t c = choice[l];
    TORCH_CHECK(c >= 0 && c < static_cast<int64_t>(L.wbits.size()) * na, "QplNet::layer_specs: option out of range");
    out.emplace_back(with_bits(L.weight_spec, L.wbits[static_cast<size_t>(c / na)]),
                     with_bits(L.act_spec, L.abits[static_cast<size_t>(c % na)]));
  }
  return out;
}

json QplNet::probabilities_json(double sigma) const {
  json j = json::object();
  for (const auto& L : layers_) {
    auto pw = probs_of(L.wq, L.wbits, sigma), pa = probs_of(L.aq, L.abits, sigma);
    json arr = json::array();
    for (size_t i = 0; i < L.wbits.size(); ++i)
      for (size_t k = 0; k < L.abits.size(); ++k)
        arr.push_back({{"weight", with_bits(L.weight_spec, L.wbits[i]).to_string()},
                       {"act", with_bits(L.act_spec, L.abits[k]).to_string()},
                       {"p", pw[i] * pa[k]}});
    j[L.name] = arr;
  }
  return j;
}

json QplNet::learned_bits_json() const {
  json j = json::object();
  for (const auto& L : layers_) {
    json e = {{"weight_scheme", L.weight_spec.scheme.empty() ? "fp32" : L.weight_spec.scheme}};
    if (L.wq) {
      e["weight"] = L.wq->bits_value();
      e["weight_range"] = {L.wbits.front(), L.wbits.back()};
      e["weight_rounded"] = L.wbits[static_cast<size_t>(L.wq->nearest())];
    } else {
      e["weight"] = 32;
    }
    if (L.aq) {
      e["act_scheme"] = L.act_spec.scheme;
      e["act"] = L.aq->bits_value();
      e["act_range"] = {L.abits.front(), L.abits.back()};
      e["act_rounded"] = L.abits[static_cast<size_t>(L.aq->nearest())];
    }
    j[L.name] = e;
  }
  return j;
}

double QplNet::mean_weight_bits() const {
  double s = 0, n = 0;
  for (const auto& L : layers_) {
    const double b = L.wq ? L.wq->bits_value() : 32.0;
    s += b * static_cast<double>(L.profile.params);
    n += static_cast<double>(L.profile.params);
  }
  return n > 0 ? s / n : 0.0;
}

// ---------------------------------------------------------------- the strategy
QplStrategy::QplStrategy(ModelPtr model, QplOptions opt)
    : NetStrategy(std::make_shared<QplNet>(std::move(model), opt)), opt_(std::move(opt)) {}

void QplStrategy::begin_step(Phase phase, double /*progress*/, uint64_t /*step_seed*/) {
  // Deterministic: no sampling. Weight steps see the interpolated quantizer with b detached.
  net_->set_continuous(/*bit_grad=*/phase == Phase::Arch);
}

void QplStrategy::calibrate(const torch::Tensor& images, uint64_t /*step_seed*/) {
  torch::NoGradGuard ng;
  net_->calibrate_next();
  net_->set_continuous(false);
  net_->forward(images);
}

std::vector<std::pair<std::string, double>> QplStrategy::metrics(double /*progress*/) {
  return {{"mean_wbits", net_->mean_weight_bits()}};
}

// ---------------------------------------------------------------- the method row
std::vector<MethodFlag> qpl_bit_flags() {
  return {
      {"bit-lr", "qpl: learning rate of the bitwidth parameters (Adam)", "0.05", false},
      {"bits-min", "qpl: smallest weight bitwidth", "1", false},
      {"bits-max", "qpl: largest weight bitwidth", "8", false},
      {"act-bits-min", "qpl: smallest act bitwidth", "2", false},
      {"act-bits-max", "qpl: largest act bitwidth", "8", false},
      {"init-bits", "qpl: initial weight bitwidth of every learned layer (0 = each scheme's own bits)", "0", false},
  };
}

void qpl_bits_from_flags(const FlagValues& f, QplOptions& o) {
  const double lr = f.number("bit-lr");
  if (!(lr > 0)) throw std::invalid_argument("--bit-lr must be positive");
  o.bit_lr = lr;
  o.bits_min = f.integer("bits-min");
  o.bits_max = f.integer("bits-max");
  o.act_bits_min = f.integer("act-bits-min");
  o.act_bits_max = f.integer("act-bits-max");
  o.init_bits = f.number("init-bits");
}

std::map<std::string, std::string> qpl_default_acts(Model& model, const TensorDataset& train, double bops_per_mac,
                                                    double weight_bits, const QplOptions& o, uint64_t seed) {
  if (!(bops_per_mac > 0) || !(weight_bits > 0)) throw std::invalid_argument("qpl_default_acts: no BOPs budget");
  const int a = static_cast<int>(
      std::clamp<long>(std::lround(bops_per_mac / weight_bits), o.act_bits_min, o.act_bits_max));
  std::map<std::string, std::string> out;
  for (const auto& [layer, one_sided] : ptq::inputs_one_sided(model, train, seed))
    out[layer] = (one_sided ? "pact:" : "uniform:") + std::to_string(a);
  return out;
}

namespace {
constexpr const char* kAutoSchemeSource = "auto";

// The weight budget in bits/weight (--avg-bits, or --budget-kib over the model's quantizable weights).
double budget_bits(const SearchOptions& opt) {
  if (auto it = opt.budgets.find("--avg-bits"); it != opt.budgets.end()) return it->second;
  auto it = opt.budgets.find("--budget-kib");
  if (it == opt.budgets.end()) throw std::invalid_argument("a weight budget is required: --budget-kib X or --avg-bits B");
  CheckpointMeta ck = read_checkpoint_meta(opt.checkpoint);
  ModelPtr m = opt.model_factory ? opt.model_factory(opt.model, ck.config) : make_model(opt.model, ck.config);
  int64_t n = 0;
  for (const auto& p : profile_model(*m)) n += p.params;
  return avg_bits(it->second * 1024.0, n);
}

// The weight bits a BOPs budget is shared with: --avg-bits when given, else the initial or scheme bits.
// BOPs per MAC: --wa-bits W,A is W x A; --bops is absolute (over the model's MACs). 0 = no BOPs budget.
double bops_per_mac(const SearchOptions& opt, Model& model) {
  double p = 0;
  if (auto it = opt.budgets.find("--wa-bits"); it != opt.budgets.end()) p = it->second;
  if (auto it = opt.budgets.find("--bops"); it != opt.budgets.end() && it->second > 0) {
    const double per = it->second / static_cast<double>(std::max<int64_t>(model_macs(model), 1));
    p = p > 0 ? std::min(p, per) : per;
  }
  return p;
}

// QPL without --qpl-scheme / --qpl-policy: VecQ (every bitwidth 1..8, the best uniform 2-bit scheme at low
// budgets in docs/results.md) on every layer, bits starting at the budget: --qpl-scheme vecq:round(B)
// --init-bits B, B = the budget in bits/weight clamped to [--bits-min, --bits-max]. Under a BOPs budget
// without --qpl-act, every layer's act scheme comes from qpl_default_acts.
SearchResult run_qpl(const SearchOptions& opt) {
  QplOptions o = options_as<QplOptions>(opt.strategy.get(), "qpl");
  const bool auto_scheme = o.source == kAutoSchemeSource;
  if (!auto_scheme && !o.act_from_budget) return run_search(opt);
  double b = 0;
  if (auto_scheme) {
    b = std::clamp(budget_bits(opt), static_cast<double>(std::max(o.bits_min, 1)),
                   static_cast<double>(std::min(o.bits_max, 8)));
    o.weight = "vecq:" + std::to_string(static_cast<int>(std::lround(b)));
    if (o.init_bits == 0) o.init_bits = b;
    char ib[32];
    std::snprintf(ib, sizeof ib, "%g", o.init_bits);
    o.source = "default for the budget: --qpl-scheme " + o.weight + " --init-bits " + ib;
  }
  const bool bops_budget = opt.budgets.count("--wa-bits") || (opt.budgets.count("--bops") && opt.budgets.at("--bops") > 0);
  bool acts_set = false;
  if (o.act_from_budget && bops_budget) {
    CheckpointMeta ck = read_checkpoint_meta(opt.checkpoint);
    ModelPtr m = opt.model_factory ? opt.model_factory(opt.model, ck.config) : make_model(opt.model, ck.config);
    const double per_mac = bops_per_mac(opt, *m);
    if (per_mac > 0) {
      acts_set = true;
      load_checkpoint_weights(opt.checkpoint, *m);
      const double wb = b > 0 ? b : (o.init_bits > 0 ? o.init_bits : QuantSpec::parse(o.weight).bits);
      Splits splits = load_splits(opt.data);
      const auto acts = qpl_default_acts(*m, splits.train, per_mac, wb, o, opt.seed);
      std::map<std::string, int> count;
      for (const auto& [layer, act] : acts) {
        json e = o.layers.contains(layer) ? o.layers[layer] : json::object();
        if (!e.contains("weight")) e["weight"] = o.weight;
        e["act"] = act;
        o.layers[layer] = e;
        ++count[act];
      }
      std::string what;
      for (const auto& [act, n] : count) what += (what.empty() ? "" : ", ") + act + " on " + std::to_string(n);
      o.source += std::string(o.source.empty() ? "" : "; ") + "acts for the BOPs budget: " + what + " layer(s)";
    }
  }
  if (auto_scheme && !acts_set) o.source += " --qpl-act " + o.act;
  if (!auto_scheme && !acts_set) return run_search(opt);
  log_info("qpl: " + o.source);
  SearchOptions s = opt;
  s.strategy = std::make_shared<QplOptions>(o);
  return run_search(s);
}
}  // namespace

SearchMethod qpl_method() {
  SearchMethod m;
  m.name = "qpl";
  m.summary = "learned bits of given schemes (--qpl-scheme or --qpl-policy)";
  m.flags = {
      {"qpl-scheme", "qpl: weight scheme of every layer, its bits = the initial bitwidth (e.g. vecq:4)", "", false},
      {"qpl-act",
       "qpl: activation scheme of every layer (fp32 = not quantized; otherwise its bits are learned too). Not "
       "given, under a BOPs budget (--bops, --wa-bits): PACT on layers whose input is never negative, uniform on "
       "the others, at the budget's act bits; otherwise fp32",
       "fp32", false},
      {"qpl-policy", "qpl: take every layer's weight / act scheme (and initial bits) from this policy", "", false},
  };
  for (auto& f : qpl_bit_flags()) m.flags.push_back(f);
  m.options_from_flags = [](const FlagValues& f) {
    if (f.has("qpl-scheme") && f.has("qpl-policy"))
      throw std::invalid_argument("give either --qpl-scheme or --qpl-policy, not both");
    auto o = std::make_shared<QplOptions>();
    qpl_bits_from_flags(f, *o);
    o->act = f.text("qpl-act");
    o->act_from_budget = !f.has("qpl-act") && !f.has("qpl-policy");
    if (f.has("qpl-policy")) {
      const std::string& p = f.text("qpl-policy");
      o->layers = qpl_layers_from_policy(load_policy(p));
      o->source = "policy " + p;
    } else if (!f.has("qpl-scheme")) {
      o->source = kAutoSchemeSource;  // run_qpl picks the scheme from the budget
    } else {
      o->weight = f.text("qpl-scheme");
      o->source = "--qpl-scheme " + o->weight + (o->act_from_budget ? std::string() : " --qpl-act " + o->act);
    }
    o->validate();
    return o;
  };
  m.options_from_json = [](const json& j) { return std::make_shared<QplOptions>(QplOptions::from_json(j)); };
  m.make = [](ModelPtr model, const SearchSpace&, const StrategyOptions* o) -> std::unique_ptr<SearchStrategy> {
    return std::make_unique<QplStrategy>(std::move(model), options_as<QplOptions>(o, "qpl"));
  };
  m.run = run_qpl;
  return m;
}

}  // namespace autoqnn::search
