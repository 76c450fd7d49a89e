// The per-layer quantization policy: Policy members, the blank and the uniform policy, shape strings.
// One concept per file: policy_io.cpp (JSON reader / writer, files), policy_totals.cpp (bytes, bits, BOPs:
// the cost accounting), policy_check.cpp (a policy against a model), policy_apply.cpp (installing its
// quantizers). Layout and field meanings: docs/policy.md; machine-checkable form: configs/policy.schema.json.
#include "autoqnn/policy.h"

#include "autoqnn/adabits.h"  // following_batchnorm
#include "quantizers/registry.h"

namespace autoqnn {

using quant::QuantSpec;
using quant::Role;

std::string shape_string(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out.empty() ? "scalar" : out;
}

LayerPolicy* Policy::find(const std::string& name) {
  for (auto& l : layers)
    if (l.name == name) return &l;
  return nullptr;
}

const LayerPolicy* Policy::find(const std::string& name) const {
  for (const auto& l : layers)
    if (l.name == name) return &l;
  return nullptr;
}

int policy_required_version(const Policy& p) {
  for (const auto& l : p.layers)
    if (!l.channel_bits.empty() || !l.act_channel_bits.empty() || !l.bias_correction.empty()) return 2;
  return 1;
}

bool same_quantizers(const LayerPolicy& a, const LayerPolicy& b) {
  return a.name == b.name && a.weight == b.weight && a.act == b.act && a.channel_bits == b.channel_bits &&
         a.act_channel_bits == b.act_channel_bits && a.bias_correction == b.bias_correction;
}

Policy blank_policy(Model& model) {
  Policy p;
  p.model = model.name();
  p.fingerprint = model_fingerprint(model);
  p.config = model.config();
  for (const auto& prof : profile_model(model)) {
    LayerPolicy l;
    l.name = prof.name;
    l.weight = QuantSpec::parse("fp32");
    l.act = QuantSpec::parse("fp32");
    l.kind = prof.kind;
    l.shape = prof.weight_shape;
    l.params = prof.params;
    l.macs = prof.macs;
    l.act_numel = prof.input_numel;
    p.layers.push_back(std::move(l));
  }
  if (p.layers.empty()) throw PolicyError("model '" + p.model + "' has no quantizable layers");
  update_totals(p);
  return p;
}

Policy uniform_policy(Model& model, const QuantSpec& weight, const QuantSpec& act, int keep_first_last) {
  if (keep_first_last < 0) throw PolicyError("keep_first_last must be >= 0");
  QuantSpec w = quant::validate_spec(weight, Role::Weight);
  QuantSpec a = quant::validate_spec(act, Role::Activation);
  Policy p = blank_policy(model);
  for (auto& l : p.layers) {
    l.weight = w;
    l.act = a;
  }
  // SAT's levels are the unscaled tanh-normalised grid in [-1, 1]: fine where a BatchNorm follows, but a
  // layer without one needs SAT's variance rescale (":rescale"), else its outputs change scale ~1/|w|.
  if (w.scheme == "sat" && !w.has("rescale")) {
    QuantSpec wr = quant::validate_spec(QuantSpec::parse(w.to_string() + ":rescale"), Role::Weight);
    for (const auto& [name, bn] : following_batchnorm(model))
      if (bn.empty())
        for (auto& l : p.layers)
          if (l.name == name) l.weight = wr;
  }
  if (keep_first_last > 0) {
    QuantSpec edge = quant::validate_spec(QuantSpec::parse("fixed:" + std::to_string(keep_first_last)), Role::Weight);
    for (LayerPolicy* l : {&p.layers.front(), &p.layers.back()}) {
      l->weight = edge;
      if (!a.is_fp()) l->act = quant::validate_spec(edge, Role::Activation);
    }
  }
  update_totals(p);
  return p;
}

}  // namespace autoqnn
