#include "search/qpl.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "autoqnn/runtime.h"
#include "quantizers/registry.h"

namespace autoqnn::search {

using nlohmann::json;
using quant::QuantSpec;
using quant::Role;

// ---------------------------------------------------------------- options
QplOptions QplOptions::from_json(const json& j) {
  QplOptions o;
  if (j.is_null()) return o;
  if (!j.is_object()) throw std::invalid_argument("qpl options must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    auto num = [&]() {
      if (!v.is_number()) throw std::invalid_argument("qpl option '" + k + "' must be a number");
      return v.get<double>();
    };
    auto integer = [&]() {
      if (!v.is_number_integer()) throw std::invalid_argument("qpl option '" + k + "' must be an integer");
      return v.get<int>();
    };
    auto str = [&]() {
      if (!v.is_string()) throw std::invalid_argument("qpl option '" + k + "' must be a string");
      return v.get<std::string>();
    };
    if (k == "weight") o.weight = str();
    else if (k == "act") o.act = str();
    else if (k == "layers") {
      if (!v.is_object()) throw std::invalid_argument("qpl option 'layers' must be an object {layer: {weight, act}}");
      o.layers = v;
    } else if (k == "bits_min") o.bits_min = integer();
    else if (k == "bits_max") o.bits_max = integer();
    else if (k == "act_bits_min") o.act_bits_min = integer();
    else if (k == "act_bits_max") o.act_bits_max = integer();
    else if (k == "init_bits") o.init_bits = num();
    else if (k == "init_act_bits") o.init_act_bits = num();
    else if (k == "snap_sigma") o.snap_sigma = num();
    else if (k == "source") o.source = str();
    else
      throw std::invalid_argument("unknown qpl option '" + k +
                                  "' (valid: weight, act, layers, bits_min, bits_max, act_bits_min, act_bits_max, "
                                  "init_bits, init_act_bits, snap_sigma, source)");
  }
  o.validate();
  return o;
}

json QplOptions::to_json() const {
  return {{"weight", weight},         {"act", act},
          {"layers", layers},         {"bits_min", bits_min},
          {"bits_max", bits_max},     {"act_bits_min", act_bits_min},
          {"act_bits_max", act_bits_max}, {"init_bits", init_bits},
          {"init_act_bits", init_act_bits}, {"snap_sigma", snap_sigma},
          {"source", source}};
}

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

torch::Tensor f64(const std::vector<int64_t>& v, torch::Device dev) {
  std::vector<double> d(v.begin(), v.end());
  return torch::tensor(d, torch::kFloat64).to(dev);
}
torch::Tensor f64(const std::vector<int>& v, torch::Device dev) {
  std::vector<double> d(v.begin(), v.end());
  return torch::tensor(d, torch::kFloat64).to(dev);
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
    for (int b : L.wbits)
      L.wbytes.push_back(quant::storage_cost(with_bits(L.weight_spec, b), L.profile.weight_shape, Role::Weight).bytes());
    for (int b : L.abits) L.abytes.push_back((static_cast<int64_t>(b) * L.profile.input_numel + 7) / 8);
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

ExpectedCost QplNet::expected_cost() const {
  torch::Device dev = torch::kCPU;
  for (const auto& t : bit_parameters()) dev = t.device();
  auto one = torch::ones({1}, torch::dtype(torch::kFloat64).device(dev));
  std::vector<torch::Tensor> w, a, b;
  for (const auto& L : layers_) {
    torch::Tensor ww = L.wq && L.wq->learned() ? L.wq->interp_weights(true) : one;
    torch::Tensor aw = L.aq && L.aq->learned() ? L.aq->interp_weights(true) : one;
    w.push_back((ww * f64(L.wbytes, dev)).sum());
    a.push_back((aw * f64(L.abytes, dev)).sum());
    b.push_back(static_cast<double>(L.profile.macs) * (ww * f64(L.wbits, dev)).sum() * (aw * f64(L.abits, dev)).sum());
  }
  ExpectedCost e;
  e.weight_bytes = torch::stack(w).sum();
  e.act_bytes = torch::stack(a);
  e.bops = torch::stack(b).sum();
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
        Cost c;
        c.weight_bytes = static_cast<double>(L.wbytes[i]);
        c.act_bytes = static_cast<double>(L.abytes[j]);
        c.bops = static_cast<double>(L.profile.macs) * L.wbits[i] * L.abits[j];
        g.cost.push_back(c);
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
    : net_(std::make_shared<QplNet>(std::move(model), opt)), opt_(std::move(opt)) {}

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

std::vector<std::pair<std::string, std::pair<QuantSpec, QuantSpec>>> QplStrategy::layer_specs(
    const std::vector<int64_t>& choice) {
  auto specs = net_->layer_specs(choice);
  std::vector<std::pair<std::string, std::pair<QuantSpec, QuantSpec>>> out;
  for (size_t i = 0; i < specs.size(); ++i) out.push_back({net_->layers()[i].name, specs[i]});
  return out;
}

std::vector<std::pair<std::string, double>> QplStrategy::metrics(double /*progress*/) {
  return {{"mean_wbits", net_->mean_weight_bits()}};
}

std::unique_ptr<SearchStrategy> make_qpl_strategy(ModelPtr model, const json& options) {
  return std::make_unique<QplStrategy>(std::move(model), QplOptions::from_json(options));
}

// ---------------------------------------------------------------- qss+qpl
std::string qss_stage_path(const std::string& path, const std::string& ext) {
  std::string base = path;
  if (base.size() > ext.size() && base.compare(base.size() - ext.size(), ext.size(), ext) == 0)
    base.resize(base.size() - ext.size());
  return base + ".qss" + ext;
}

SearchResult run_qss_qpl(const SearchOptions& opt, const ArchAdamOptions& bit_opt) {
  if (opt.out.empty()) throw std::invalid_argument("--out (the policy JSON to write) is required");
  const json& st = opt.strategy;
  if (!st.is_object()) throw std::invalid_argument("qss+qpl options must be {\"qss\": {...}, \"qpl\": {...}}");
  for (auto it = st.begin(); it != st.end(); ++it)
    if (it.key() != "qss" && it.key() != "qpl")
      throw std::invalid_argument("unknown qss+qpl option '" + it.key() + "' (valid: qss, qpl)");
  const std::string state = opt.state.empty() ? default_state_path(opt.out) : opt.state;

  // ---- stage 1: QSS chooses the schemes
  SearchOptions s1 = opt;
  s1.method = "qss";
  s1.strategy = st.value("qss", json::object());
  s1.out = qss_stage_path(opt.out, ".json");
  s1.state = qss_stage_path(state, ".state.pt");
  s1.log = opt.log.empty() ? "" : qss_stage_path(opt.log, ".csv");
  log_info("qss+qpl: stage 1/2, QSS -> " + s1.out);
  SearchResult r1 = run_search(s1);
  if (r1.stopped) return r1;

  // ---- stage 2: QPL learns the bits of those schemes
  SearchOptions s2 = opt;
  s2.method = "qpl";
  s2.arch = bit_opt;
  json q = st.value("qpl", json::object());
  if (q.contains("layers") || q.contains("weight"))
    throw std::invalid_argument("qss+qpl: the schemes come from the QSS stage; do not give qpl 'layers' / 'weight'");
  q["layers"] = qpl_layers_from_policy(r1.policy);
  q["source"] = "qss stage: " + s1.out;
  s2.strategy = q;
  {
    std::string base = opt.out;
    if (base.size() > 5 && base.substr(base.size() - 5) == ".json") base.resize(base.size() - 5);
    s2.out = base + ".qpl.json";  // the QPL stage's own policy; opt.out gets the combined provenance
  }
  s2.state = state;
  if (opt.stop_after_epoch > 0) s2.stop_after_epoch = std::max(0, opt.stop_after_epoch - (opt.warmup + opt.epochs));
  log_info("qss+qpl: stage 2/2, QPL on the QSS schemes -> " + opt.out);
  SearchResult r2 = run_search(s2);
  if (r2.stopped) return r2;

  Policy p = r2.policy;
  json prov = p.search;
  json qss_prov = r1.policy.search;
  qss_prov["policy"] = s1.out;
  qss_prov["layers"] = qpl_layers_from_policy(r1.policy);
  qss_prov["weight_bytes"] = r1.policy.totals.weight_bytes;
  json qpl_prov = r2.policy.search;
  qpl_prov["policy"] = s2.out;
  prov["method"] = "qss+qpl";
  prov["stages"] = {{"qss", qss_prov}, {"qpl", qpl_prov}};
  p.search = prov;
  save_policy(opt.out, p);
  log_info("qss+qpl: policy " + opt.out + " (QSS stage " + s1.out + ", QPL stage " + s2.out + ")");
  r2.policy = std::move(p);
  return r2;
}

}  // namespace autoqnn::search
