#include "autoqnn/adabits.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "autoqnn/number_text.h"
#include "autoqnn/switchable_bn.h"
#include "quantizers/registry.h"

namespace autoqnn {

using quant::QuantSpec;
using quant::Role;

namespace {

std::string join_bits(const std::vector<int>& v) {
  std::string s;
  for (int b : v) s += (s.empty() ? "" : ",") + std::to_string(b);
  return s;
}

void check_bits_list(const std::vector<int>& bits, const std::string& what) {
  if (bits.empty()) throw std::invalid_argument(what + ": the bitwidth list is empty");
  std::set<int> seen;
  for (int b : bits) {
    if (b < 2 || b > 8)
      throw std::invalid_argument(what + ": bitwidth " + std::to_string(b) + " out of range (valid: 2..8)");
    if (!seen.insert(b).second) throw std::invalid_argument(what + ": bitwidth " + std::to_string(b) + " listed twice");
  }
}

// Records whether any input it sees has a negative element (an act-slot probe of the float model).
class SignProbe : public quant::FakeQuantizer {
 public:
  torch::Tensor forward(const torch::Tensor& x) override {
    if (!negative && (x < 0).any().item<bool>()) negative = true;
    return x;
  }
  std::string describe() const override { return "sign-probe"; }
  bool negative = false;
};

// Every module's training flag, restored on destruction (pre-order).
struct ModeGuard {
  std::vector<std::pair<torch::nn::Module*, bool>> modes;
  explicit ModeGuard(torch::nn::Module& root) {
    modes.emplace_back(&root, root.is_training());
    for (auto& m : root.modules(/*include_self=*/false)) modes.emplace_back(m.get(), m->is_training());
  }
  ~ModeGuard() {
    for (auto& [m, t] : modes) m->train(t);
  }
};

std::map<std::string, std::shared_ptr<torch::nn::Module>> modules_by_name(Model& model) {
  std::map<std::string, std::shared_ptr<torch::nn::Module>> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) out[item.key()] = item.value();
  return out;
}

}  // namespace

// ------------------------------------------------------------------ SwitchableQuantizer
SwitchableQuantizer::SwitchableQuantizer(Role role, const QuantSpec& spec, const std::vector<int>& bits)
    : role_(role), bits_(bits) {
  check_bits_list(bits, "switchable quantizer '" + spec.to_string() + "'");
  for (int b : bits) {
    QuantSpec s = spec;
    s.bits = b;
    auto q = quant::make_quantizer(s, role);
    if (!q) throw std::invalid_argument("switchable quantizer: '" + spec.to_string() + "' is not a quantizer (fp32)");
    q_.push_back(register_module("b" + std::to_string(b), q));
  }
}

const quant::QuantizerPtr& SwitchableQuantizer::at_bits(int bits) const {
  auto it = std::find(bits_.begin(), bits_.end(), bits);
  if (it == bits_.end())
    throw std::invalid_argument("switchable quantizer " + describe() + ": no quantizer for " + std::to_string(bits) +
                                " bits (valid: " + join_bits(bits_) + ")");
  return q_[static_cast<size_t>(it - bits_.begin())];
}

void SwitchableQuantizer::select(int bits) {
  if (bits != 0) at_bits(bits);
  active_ = bits;
}

torch::Tensor SwitchableQuantizer::forward(const torch::Tensor& x) {
  if (calibrate_next) {
    calibrate_next = false;
    torch::NoGradGuard ng;
    for (auto& q : q_) q->calibrate(x.detach());
  }
  if (active_ == 0) return x;
  return at_bits(active_)->forward(x);
}

std::string SwitchableQuantizer::describe() const {
  std::string s = "switch{";
  for (size_t i = 0; i < q_.size(); ++i) s += (i ? "," : "") + q_[i]->describe();
  return s + "}@" + std::to_string(active_);
}

// ------------------------------------------------------------------ plan
QuantSpec AdaBitsPlan::weight_at(size_t i, int b) const {
  QuantSpec s = layers.at(i).weight;
  if (!s.is_fp()) s.bits = b;
  return s;
}

QuantSpec AdaBitsPlan::act_at(size_t i, int b) const {
  QuantSpec s = layers.at(i).act;
  if (!s.is_fp()) s.bits = b;
  return s;
}

bool AdaBitsPlan::has_bits(int b) const { return std::find(bits.begin(), bits.end(), b) != bits.end(); }
std::string AdaBitsPlan::bits_string() const { return join_bits(bits); }

nlohmann::json AdaBitsPlan::to_json() const {
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& l : layers)
    ls.push_back({{"name", l.name}, {"weight", l.weight.to_string()}, {"act", l.act.to_string()}, {"bn", l.bn}});
  return {{"bits", bits}, {"layers", ls}};
}

AdaBitsPlan AdaBitsPlan::from_json(const nlohmann::json& j, const std::string& source) {
  AdaBitsPlan p;
  try {
    p.bits = j.at("bits").get<std::vector<int>>();
    check_bits_list(p.bits, "bits");
    for (const auto& l : j.at("layers")) {
      AdaBitsLayer a;
      a.name = l.at("name").get<std::string>();
      a.weight = quant::validate_spec(QuantSpec::parse(l.at("weight").get<std::string>()), Role::Weight);
      a.act = quant::validate_spec(QuantSpec::parse(l.at("act").get<std::string>()), Role::Activation);
      a.bn = l.value("bn", "");
      if (a.weight.is_fp() || a.weight.bits != p.bits[0] || (!a.act.is_fp() && a.act.bits != p.bits[0]))
        throw std::invalid_argument("layer '" + a.name + "': specs must be quantizers at " +
                                    std::to_string(p.bits[0]) + " bits");
      p.layers.push_back(a);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(source + ": bad AdaBits plan (" + e.what() + ")");
  }
  return p;
}

std::vector<int> parse_bits_list(const std::string& text, const std::string& what) {
  std::vector<int> out;
  for (double v : parse_number_list(text, what)) {
    if (v != std::floor(v) || std::abs(v) > 1e6)
      throw std::invalid_argument(what + ": '" + text + "': " + std::to_string(v) + " is not an integer (expected e.g. 8,6,5,4)");
    out.push_back(static_cast<int>(v));
  }
  check_bits_list(out, what);
  return out;
}

// ------------------------------------------------------------------ structure
std::vector<std::pair<std::string, std::string>> following_batchnorm(Model& model) {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> mods;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) mods.emplace_back(item.key(), item.value());
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < mods.size(); ++i) {
    auto* layer = dynamic_cast<QuantLayer*>(mods[i].second.get());
    if (!layer) continue;
    const std::string prefix = mods[i].first + ".";
    size_t j = i + 1;
    while (j < mods.size() && mods[j].first.rfind(prefix, 0) == 0) ++j;  // skip the layer's own children
    std::string bn;
    if (j < mods.size())
      if (auto* b = dynamic_cast<torch::nn::BatchNorm2dImpl*>(mods[j].second.get()))
        if (b->options.num_features() == layer->weight_shape()[0]) bn = mods[j].first;
    out.emplace_back(mods[i].first, bn);
  }
  return out;
}

AdaBitsPlan make_adabits_plan(Model& model, const std::vector<int>& bits, const torch::Tensor& probe) {
  check_bits_list(bits, "AdaBits");
  AdaBitsPlan plan;
  plan.bits = bits;
  auto layers = quant_layers(model);
  auto bns = following_batchnorm(model);
  // Which layer inputs are signed: one probe batch through the float model.
  std::vector<std::shared_ptr<SignProbe>> probes;
  {
    ModeGuard mg(model);
    std::vector<std::pair<QuantLayer*, FakeQuantPtr>> saved;
    for (auto& l : layers) {
      saved.emplace_back(l.layer, l.layer->act_quantizer());
      probes.push_back(std::make_shared<SignProbe>());
      l.layer->set_act_quantizer(probes.back());
    }
    try {
      model.eval();
      torch::NoGradGuard ng;
      if (probe.defined() && probe.numel() > 0) model.forward(probe.to(layers.empty() ? torch::kCPU : layers[0].layer->weight_param().device()));
    } catch (...) {
      for (auto& [l, q] : saved) l->set_act_quantizer(q);
      throw;
    }
    for (auto& [l, q] : saved) l->set_act_quantizer(q);
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    AdaBitsLayer a;
    a.name = layers[i].name;
    a.bn = bns[i].second;
    a.weight = QuantSpec::parse("sat:" + std::to_string(bits[0]) + (a.bn.empty() ? ":rescale" : ""));
    if (i == 0) a.act = QuantSpec::parse("fp32");
    else a.act = QuantSpec::parse((probes[i]->negative ? "uniform:" : "pact:") + std::to_string(bits[0]));
    a.weight = quant::validate_spec(a.weight, Role::Weight);
    a.act = quant::validate_spec(a.act, Role::Activation);
    plan.layers.push_back(a);
  }
  return plan;
}

void install_adabits(Model& model, const AdaBitsPlan& plan) {
  auto layers = quant_layers(model);
  if (layers.size() != plan.layers.size())
    throw std::runtime_error("AdaBits plan has " + std::to_string(plan.layers.size()) + " layers, model " +
                             model.name() + " has " + std::to_string(layers.size()));
  auto mods = modules_by_name(model);
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& pl = plan.layers[i];
    if (layers[i].name != pl.name)
      throw std::runtime_error("AdaBits plan layer " + std::to_string(i) + " is '" + pl.name + "', model " +
                               model.name() + " has '" + layers[i].name + "'");
    if (!pl.bn.empty() && (!mods.count(pl.bn) || !dynamic_cast<SwitchableBatchNorm2dImpl*>(mods[pl.bn].get())))
      throw std::runtime_error("AdaBits plan: layer '" + pl.name + "' names BatchNorm '" + pl.bn + "', which model " +
                               model.name() + " does not have");
    auto dev = layers[i].layer->weight_param().device();
    const bool training = layers[i].module->is_training();
    auto wq = std::make_shared<SwitchableQuantizer>(Role::Weight, pl.weight, plan.bits);
    wq->to(dev);
    wq->train(training);
    layers[i].layer->set_weight_quantizer(wq);
    if (pl.act.is_fp()) {
      layers[i].layer->set_act_quantizer(nullptr);
    } else {
      auto aq = std::make_shared<SwitchableQuantizer>(Role::Activation, pl.act, plan.bits);
      aq->to(dev);
      aq->train(training);
      layers[i].layer->set_act_quantizer(aq);
    }
  }
  for (auto& m : model.modules(/*include_self=*/false))
    if (auto* bn = dynamic_cast<SwitchableBatchNorm2dImpl*>(m.get())) bn->make_switchable(plan.bits);
}

void select_bits(Model& model, int bits) {
  int found = 0;
  for (auto& m : model.modules(/*include_self=*/false)) {
    if (auto* q = dynamic_cast<SwitchableQuantizer*>(m.get())) {
      q->select(bits);
      ++found;
    } else if (auto* bn = dynamic_cast<SwitchableBatchNorm2dImpl*>(m.get())) {
      if (bn->is_switchable()) bn->select(bits);
    }
  }
  if (found == 0 && bits != 0)
    throw std::invalid_argument("model " + model.name() + " is not switchable (no AdaBits quantizers installed)");
}

void select_policy(Model& model, const AdaBitsPlan& plan, const Policy& policy) {
  check_policy(policy, model);
  auto layers = quant_layers(model);
  auto mods = modules_by_name(model);
  std::set<std::string> bn_done;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerPolicy* l = policy.find(layers[i].name);
    if (!l->channel_bits.empty() || !l->act_channel_bits.empty() || !l->bias_correction.empty())
      throw PolicyError("layer '" + l->name + "': an AdaBits model takes per-layer specs only (no channel_bits, "
                        "act_channel_bits or bias_correction)");
    auto pick = [&](const QuantSpec& want, bool weight) {
      std::string allowed;
      for (int b : plan.bits) {
        QuantSpec s = weight ? plan.weight_at(i, b) : plan.act_at(i, b);
        if (s == want) return s.is_fp() ? 0 : b;
        allowed += (allowed.empty() ? "" : ", ") + s.to_string();
        if (s.is_fp()) break;
      }
      throw PolicyError("layer '" + l->name + "': " + (weight ? "weight" : "act") + " spec '" + want.to_string() +
                        "' is not one the AdaBits model was trained with (bits " + plan.bits_string() +
                        "; allowed: " + allowed + ")");
    };
    const int wb = pick(l->weight, true), ab = pick(l->act, false);
    if (auto q = std::dynamic_pointer_cast<SwitchableQuantizer>(layers[i].layer->weight_quantizer())) q->select(wb);
    if (auto q = std::dynamic_pointer_cast<SwitchableQuantizer>(layers[i].layer->act_quantizer())) q->select(ab);
    const std::string& bn = plan.layers[i].bn;
    if (!bn.empty()) {
      if (auto* m = dynamic_cast<SwitchableBatchNorm2dImpl*>(mods[bn].get())) m->select(wb);
      bn_done.insert(bn);
    }
  }
  // BatchNorms after no quantizable layer: the highest listed bitwidth.
  const int top = *std::max_element(plan.bits.begin(), plan.bits.end());
  for (auto& [name, m] : mods)
    if (auto* bn = dynamic_cast<SwitchableBatchNorm2dImpl*>(m.get()))
      if (bn->is_switchable() && !bn_done.count(name)) bn->select(top);
}

Policy adabits_policy(Model& model, const AdaBitsPlan& plan, int bits) {
  if (!plan.has_bits(bits))
    throw std::invalid_argument("AdaBits model has no " + std::to_string(bits) + "-bit mode (bits " +
                                plan.bits_string() + ")");
  Policy p = blank_policy(model);
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    LayerPolicy* l = p.find(plan.layers[i].name);
    if (!l) throw std::runtime_error("AdaBits plan layer '" + plan.layers[i].name + "' not in model " + model.name());
    l->weight = plan.weight_at(i, bits);
    l->act = plan.act_at(i, bits);
  }
  update_totals(p);
  return p;
}

int64_t calibrate_adabits(Model& model, const TensorDataset& data, int64_t batches, int64_t batch_size, uint64_t seed,
                          torch::Device device) {
  if (batches <= 0 || data.size() == 0) return 0;
  ModeGuard mg(model);
  std::vector<SwitchableQuantizer*> acts;
  for (auto& l : quant_layers(model))
    if (auto q = std::dynamic_pointer_cast<SwitchableQuantizer>(l.layer->act_quantizer())) acts.push_back(q.get());
  if (acts.empty()) return 0;
  select_bits(model, 0);
  model.eval();
  torch::NoGradGuard ng;
  BatchIterator it(data, batch_size, /*shuffle=*/true, seed);
  it.start_epoch(0);
  torch::Tensor x, y;
  int64_t n = 0, done = 0;
  while (done < batches && it.next(x, y)) {
    for (auto* q : acts) q->calibrate_next = true;
    model.forward(x.to(device));
    n += x.size(0);
    ++done;
  }
  for (auto* q : acts) q->calibrate_next = false;
  return n;
}

torch::Tensor adabits_loss(Model& model, const std::vector<int>& bits, const torch::Tensor& x, const torch::Tensor& y,
                           torch::Tensor& logits) {
  torch::Tensor total;
  for (size_t i = 0; i < bits.size(); ++i) {
    select_bits(model, bits[i]);
    auto out = model.forward(x);
    auto loss = torch::nn::functional::cross_entropy(out, y);
    if (i == 0) logits = out.detach();
    total = total.defined() ? total + loss : loss;
  }
  // The summed loss, divided by the number of bitwidths: the same gradient direction as the sum, with the
  // learning rate meaning what it means for one bitwidth (the plain sum made lr 0.01 diverge at 8,6,5,4).
  return total / static_cast<double>(bits.size());
}

void adabits_warm_start(const std::string& path, const std::string& out_fp32) {
  auto meta = read_checkpoint_meta(path);
  auto plan = adabits_plan_of(meta, path);
  auto ada = make_model(meta.model, meta.config);
  install_adabits(*ada, plan);
  load_checkpoint_weights(path, *ada);
  torch::NoGradGuard ng;
  for (auto& m : ada->modules(/*include_self=*/false)) {
    auto* bn = dynamic_cast<SwitchableBatchNorm2dImpl*>(m.get());
    if (!bn || !bn->is_switchable()) continue;
    auto mean_of = [&](auto get) {
      torch::Tensor acc;
      for (int b : plan.bits) {
        auto t = get(*bn->at_bits(b)).to(torch::kFloat64);
        acc = acc.defined() ? acc + t : t;
      }
      return acc / static_cast<double>(plan.bits.size());
    };
    if (bn->weight.defined()) bn->weight.copy_(mean_of([](torch::nn::BatchNorm2dImpl& x) { return x.weight; }));
    if (bn->bias.defined()) bn->bias.copy_(mean_of([](torch::nn::BatchNorm2dImpl& x) { return x.bias; }));
    if (bn->running_mean.defined())
      bn->running_mean.copy_(mean_of([](torch::nn::BatchNorm2dImpl& x) { return x.running_mean; }));
    if (bn->running_var.defined())
      bn->running_var.copy_(mean_of([](torch::nn::BatchNorm2dImpl& x) { return x.running_var; }));
  }
  auto plain = make_model(meta.model, meta.config);
  auto src_p = ada->named_parameters(true);
  auto src_b = ada->named_buffers(true);
  for (auto& p : plain->named_parameters(true)) p.value().copy_(src_p[p.key()]);
  for (auto& b : plain->named_buffers(true)) b.value().copy_(src_b[b.key()]);
  CheckpointMeta out;
  out.kind = "fp32";
  out.model = meta.model;
  out.config = meta.config;
  out.dataset = meta.dataset;
  out.epoch = 0;
  out.extra = {{"warm_start_from", path}, {"adabits", plan.bits}};
  save_checkpoint(out_fp32, *plain, out);
}

CheckpointMeta adabits_meta(const Model& model, const AdaBitsPlan& plan, const std::string& dataset, int64_t epoch) {
  CheckpointMeta m;
  m.kind = "adabits";
  m.model = model.name();
  m.config = model.config();
  m.dataset = dataset;
  m.epoch = epoch;
  m.extra = {{"adabits", plan.to_json()}};
  return m;
}

bool is_adabits(const CheckpointMeta& meta) { return meta.kind == "adabits"; }

AdaBitsPlan adabits_plan_of(const CheckpointMeta& meta, const std::string& path) {
  if (!is_adabits(meta))
    throw std::runtime_error("checkpoint '" + path + "' is not an AdaBits model (kind '" + meta.kind + "')");
  if (!meta.extra.is_object() || !meta.extra.contains("adabits"))
    throw std::runtime_error("checkpoint '" + path + "': AdaBits checkpoint without its plan (extra.adabits)");
  return AdaBitsPlan::from_json(meta.extra.at("adabits"), "checkpoint '" + path + "'");
}

}  // namespace autoqnn
