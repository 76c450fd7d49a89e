#include "autoqnn/ptq.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "autoqnn/aciq.h"
#include "autoqnn/act_stats.h"
#include "autoqnn/bit_allocation.h"
#include "autoqnn/bn_fold.h"
#include "autoqnn/convert.h"
#include "autoqnn/runtime.h"
#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn::ptq {

using quant::QuantSpec;
using quant::Role;

std::pair<bool, bool> parse_bit_alloc(const std::string& s) {
  bool w = false, a = false;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "weights" || item == "weight") w = true;
    else if (item == "acts" || item == "act" || item == "activations") a = true;
    else throw std::invalid_argument("--bit-alloc: unknown item '" + item + "' (valid: weights, acts, weights,acts)");
  }
  if (!w && !a) throw std::invalid_argument("--bit-alloc: empty (valid: weights, acts, weights,acts)");
  return {w, a};
}

void validate(const PtqOptions& o) {
  quant::validate_spec(o.weight, Role::Weight);
  quant::validate_spec(o.act, Role::Activation);
  if (!o.aciq.empty()) {
    parse_prior(o.aciq);
    if (o.act.is_fp()) throw std::invalid_argument("--aciq clips activations, but --act is fp32");
    if (o.act.scheme != "uniform")
      throw std::invalid_argument("--aciq sets the range of uniform activation quantizers; --act '" +
                                  o.act.to_string() + "' is not 'uniform' (use e.g. uniform:4:asym)");
    if (o.act.flag("per_channel"))
      throw std::invalid_argument("--aciq: --act '" + o.act.to_string() +
                                  "' is per_channel; use --bit-alloc acts for per-channel activation ranges");
  }
  if (o.alloc_weights && o.weight.is_fp()) throw std::invalid_argument("--bit-alloc weights, but --weight is fp32");
  if (o.alloc_acts && o.act.is_fp()) throw std::invalid_argument("--bit-alloc acts, but --act is fp32");
  if (!o.bias_correction.empty()) {
    quant::parse_correction(o.bias_correction);
    if (o.weight.is_fp()) throw std::invalid_argument("--bias-correction, but --weight is fp32");
  }
  if (o.calib_batches < 1 && (!o.aciq.empty() || o.alloc_acts || !o.act.is_fp()))
    throw std::invalid_argument("--calib-batches must be >= 1 when activations are quantized");
  if (o.max_channel_bits < 1) throw std::invalid_argument("max channel bits must be >= 1");
}

namespace {

std::pair<int, int> bit_range(const QuantSpec& spec, Role role, int cap) {
  auto v = quant::valid_bits(spec, role);
  if (v.empty()) throw std::invalid_argument("'" + spec.to_string() + "' has no valid bitwidths");
  int lo = *std::min_element(v.begin(), v.end());
  int hi = std::min(*std::max_element(v.begin(), v.end()), std::max(cap, spec.bits));
  // valid_bits may have holes (e.g. schemes with fixed bit sets): keep to a contiguous range around spec.bits
  while (lo < spec.bits && std::find(v.begin(), v.end(), lo) == v.end()) ++lo;
  for (int b = spec.bits; b >= lo; --b)
    if (std::find(v.begin(), v.end(), b) == v.end()) { lo = b + 1; break; }
  for (int b = spec.bits; b <= hi; ++b)
    if (std::find(v.begin(), v.end(), b) == v.end()) { hi = b - 1; break; }
  return {lo, hi};
}

void set_running(torch::nn::Module& q, const std::string& name, double v) {
  auto bufs = q.named_buffers(/*recurse=*/false);
  auto* b = bufs.find(name);
  auto* init = bufs.find(name + "_init");
  if (!b || !init) throw std::runtime_error("activation quantizer has no running buffer '" + name + "'");
  torch::NoGradGuard ng;
  b->fill_(v);
  init->fill_(1.0);
}

// Sets a uniform activation quantizer's running range to the ACIQ clip of `s` at `bits`.
nlohmann::json clip_quantizer(quant::Quantizer& q, const ChannelStats& s, int bits, Prior prior, bool data_one_sided) {
  const bool asym = q.spec().flag("asym");
  nlohmann::json j;
  if (asym) {
    if (data_one_sided) {
      double a = aciq_clip(prior, s, bits, /*one_sided=*/true);
      set_running(q, "min", 0.0);
      set_running(q, "max", a);
      j = {{"lo", 0.0}, {"hi", a}};
    } else {
      double a = aciq_clip(prior, s, bits, false);
      double lo = std::max(s.min, s.mean - a), hi = std::min(s.max, s.mean + a);
      set_running(q, "min", lo);
      set_running(q, "max", hi);
      j = {{"lo", lo}, {"hi", hi}};
    }
  } else {
    double a = aciq_clip(prior, s, bits, false);
    double m = std::min(std::fabs(s.mean) + a, std::max(std::fabs(s.min), std::fabs(s.max)));
    set_running(q, "max_abs", m);
    j = {{"max_abs", m}};
  }
  return j;
}

// The layer alone (its weight and act quantizers as installed).
torch::Tensor layer_forward(NamedQuantLayer& nl, const torch::Tensor& x) {
  if (auto* c = dynamic_cast<QuantConv2dImpl*>(nl.layer)) return c->forward(x);
  if (auto* l = dynamic_cast<QuantLinearImpl*>(nl.layer)) return l->forward(x);
  throw std::runtime_error("layer '" + nl.name + "': unknown quant layer kind");
}

nlohmann::json bits_histogram(const std::vector<int>& bits) {
  std::map<int, int> h;
  for (int b : bits) ++h[b];
  nlohmann::json j = nlohmann::json::object();
  for (auto [b, n] : h) j[std::to_string(b)] = n;
  return j;
}

}  // namespace

PtqResult run_ptq(Model& model, const TensorDataset& calib, const PtqOptions& o) {
  validate(o);
  for (const auto& l : quant_layers(model))
    if (l.layer->weight_quantizer() || l.layer->act_quantizer())
      throw std::invalid_argument("ptq needs an FP32 model without quantizers (layer '" + l.name + "' has one)");
  PtqResult res;
  model.to(o.device);
  model.eval();
  if (o.fold_bn) {
    res.folded = fold_batchnorm(model);
    log_info("ptq: folded " + std::to_string(res.folded.size()) + " BatchNorm layers into their convolutions");
  }
  const QuantSpec wspec = quant::validate_spec(o.weight, Role::Weight);
  const QuantSpec aspec = quant::validate_spec(o.act, Role::Activation);
  Policy p = uniform_policy(model, wspec, aspec, o.keep_first_last);

  std::map<std::string, LayerActStats> stats;
  if (!aspec.is_fp() && (!o.aciq.empty() || o.alloc_acts)) {
    StatsOptions so;
    so.batches = o.calib_batches;
    so.batch_size = o.batch_size;
    so.seed = o.seed;
    so.device = o.device;
    if (!o.aciq.empty() && o.aciq_guard) so.keep_inputs = o.guard_rows;
    stats = collect_act_stats(model, calib, so);
  }
  const bool aciq_on = !o.aciq.empty();
  const Prior prior = aciq_on ? parse_prior(o.aciq) : Prior::Laplace;

  auto layers = quant_layers(model);
  for (auto& nl : layers) {
    LayerPolicy& l = *p.find(nl.name);
    nlohmann::json& rep = res.layers[nl.name];
    rep["weight"] = l.weight.to_string();
    rep["act"] = l.act.to_string();
    const bool main_w = !l.weight.is_fp() && l.weight == wspec;  // not a kept first/last layer
    const bool main_a = !l.act.is_fp() && l.act == aspec;
    if (o.alloc_weights && main_w) {
      torch::NoGradGuard ng;
      auto w = nl.layer->weight_param().detach().to(torch::kCPU, torch::kFloat64);
      auto amax = w.reshape({w.size(0), -1}).abs().amax(1);
      std::vector<double> alpha(amax.data_ptr<double>(), amax.data_ptr<double>() + amax.numel());
      auto [lo, hi] = bit_range(l.weight, Role::Weight, o.max_channel_bits);
      auto bits = allocate_bits(alpha, l.weight.bits, lo, hi);
      if (std::any_of(bits.begin(), bits.end(), [&](int b) { return b != l.weight.bits; })) l.channel_bits = bits;
      rep["weight_bits"] = bits_histogram(bits);
    }
    if (o.alloc_acts && main_a) {
      const LayerActStats& st = stats.at(nl.name);
      std::vector<double> alpha;
      for (const auto& cs : st.channels)
        alpha.push_back(aciq_on ? aciq_clip(prior, cs, l.act.bits, st.one_sided() && l.act.flag("asym"))
                                : std::max(std::fabs(cs.min), std::fabs(cs.max)));
      auto [lo, hi] = bit_range(l.act, Role::Activation, o.max_channel_bits);
      auto bits = allocate_bits(alpha, l.act.bits, lo, hi);
      if (bits.size() > 1 && std::any_of(bits.begin(), bits.end(), [&](int b) { return b != l.act.bits; }))
        l.act_channel_bits = bits;
      rep["act_bits"] = bits_histogram(bits);
    }
    if (!o.bias_correction.empty() && !l.weight.is_fp()) l.bias_correction = o.bias_correction;
  }
  update_totals(p);
  p.search = {{"method", "ptq"},
              {"aciq", o.aciq.empty() ? "none" : o.aciq},
              {"bit_alloc", std::string(o.alloc_weights ? "weights" : "") + (o.alloc_weights && o.alloc_acts ? "," : "") +
                                (o.alloc_acts ? "acts" : "")},
              {"bias_correction", o.bias_correction.empty() ? "none" : o.bias_correction},
              {"fold_bn", o.fold_bn},
              {"calib_batches", o.calib_batches},
              {"seed", o.seed},
              {"version", AUTOQNN_VERSION}};

  CalibOptions co;
  co.batches = aspec.is_fp() ? 0 : o.calib_batches;
  co.batch_size = o.batch_size;
  co.seed = o.seed;
  co.device = o.device;
  convert_model(model, p, &calib, co);  // installs, calibrates weights (+ bias correction) and act ranges

  if (aciq_on) {
    int64_t kept_minmax = 0, guarded = 0;
    for (auto& nl : layers) {
      const LayerPolicy& l = *p.find(nl.name);
      if (l.act.is_fp() || l.act.scheme != "uniform") continue;  // kept first/last (fixed:n) keep min-max
      const LayerActStats& st = stats.at(nl.name);
      nlohmann::json& rep = res.layers[nl.name];
      rep["one_sided"] = st.one_sided();
      const FakeQuantPtr aq = nl.layer->act_quantizer();
      // the guard's probe: output error of the layer with the min-max range (as calibrated) ...
      const bool guard = o.aciq_guard && st.input.defined();
      std::vector<torch::Tensor> saved;
      torch::Tensor ref;
      double e_minmax = 0;
      if (guard) {
        torch::NoGradGuard ng;
        for (const auto& b : aq->buffers()) saved.push_back(b.clone());
        nl.layer->set_act_quantizer(nullptr);
        ref = layer_forward(nl, st.input);
        nl.layer->set_act_quantizer(aq);
        e_minmax = (layer_forward(nl, st.input) - ref).pow(2).mean().item<double>();
      }
      if (auto q = std::dynamic_pointer_cast<quant::Quantizer>(aq)) {
        rep["clip"] = clip_quantizer(*q, st.all, q->bits(), prior, st.one_sided());
      } else if (auto cq = std::dynamic_pointer_cast<quant::ChannelActQuantizer>(aq)) {
        double lo = 1e300, hi = -1e300;
        for (size_t c = 0; c < cq->channels().size(); ++c) {
          auto j = clip_quantizer(*cq->channels()[c], st.channels[c], cq->channel_bits()[c], prior, st.one_sided());
          double v = j.contains("hi") ? j["hi"].get<double>() : j["max_abs"].get<double>();
          lo = std::min(lo, v), hi = std::max(hi, v);
        }
        rep["clip_range"] = {lo, hi};
      }
      // ... against the ACIQ clip's; the lower one stays
      if (guard) {
        torch::NoGradGuard ng;
        ++guarded;
        const double e_aciq = (layer_forward(nl, st.input) - ref).pow(2).mean().item<double>();
        rep["guard_output_mse"] = {{"aciq", e_aciq}, {"minmax", e_minmax}};
        if (e_aciq > e_minmax) {
          auto bufs = aq->buffers();
          for (size_t i = 0; i < bufs.size(); ++i) bufs[i].copy_(saved[i]);
          rep["clip_choice"] = "minmax";
          ++kept_minmax;
        } else {
          rep["clip_choice"] = "aciq";
        }
      }
    }
    if (guarded > 0)
      log_info("ptq: ACIQ guard kept the min-max range on " + std::to_string(kept_minmax) + " of " +
               std::to_string(guarded) + " layers (lower layer-output error on " + std::to_string(o.guard_rows) +
               " calibration rows)");
    p.search["aciq_guard"] = guarded > 0;
    p.search["aciq_minmax_layers"] = kept_minmax;
  }
  res.policy = p;
  return res;
}

}  // namespace autoqnn::ptq
