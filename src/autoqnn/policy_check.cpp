// check_policy: a policy against a model (model, layer set, shapes, facts, specs, per-channel bits, totals).
#include "autoqnn/policy.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn {

using quant::QuantSpec;
using quant::Role;

namespace {

bool same_double(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); }

std::string join_names(const std::vector<std::string>& v, size_t max = 12) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max; ++i) out += (i ? ", " : "") + v[i];
  if (v.size() > max) out += ", ... (" + std::to_string(v.size()) + " in all)";
  return out;
}

}  // namespace

namespace {
// Per-channel bits of a weight (output channels) or an activation (input channels): one entry per channel,
// each a valid bitwidth of the layer's scheme.
void check_channel_bits(const std::vector<int>& bits, const QuantSpec& spec, Role role, int64_t channels,
                        const std::string& key, const std::string& whose, const std::string& what,
                        const std::string& at) {
  if (bits.empty()) return;
  if (static_cast<int64_t>(bits.size()) != channels)
    throw PolicyError(at + key + " has " + std::to_string(bits.size()) + " entries, " + whose + " " +
                      std::to_string(channels) + " " + what);
  for (int b : bits) {
    QuantSpec s = spec;
    s.bits = b;
    try {
      quant::validate_spec(s, role);
    } catch (const std::exception& e) {
      throw PolicyError(at + key + ": " + e.what());
    }
  }
}
}  // namespace

void check_policy(const Policy& p, Model& model) {
  const std::string who = "policy for '" + p.model + "'";
  // An imported model is named by its path, spelt as given; the fingerprint below identifies it.
  if (p.model != model.name() && !(is_imported_model_name(p.model) && is_imported_model_name(model.name())))
    throw PolicyError("the policy was written for model '" + p.model + "', not '" + model.name() +
                      "' (write one with `autoqnn policy uniform --model " + model.name() + "`)");
  if (p.format_version < 1 || p.format_version > kPolicyMaxFormatVersion)
    throw PolicyError(who + ": unsupported format_version " + std::to_string(p.format_version));
  auto prof = profile_model(model);
  std::map<std::string, const LayerProfile*> by_name;
  std::vector<std::string> model_names;
  for (const auto& l : prof) {
    by_name[l.name] = &l;
    model_names.push_back(l.name);
  }
  std::set<std::string> seen;
  for (const auto& l : p.layers) {
    if (!seen.insert(l.name).second) throw PolicyError(who + ": layer '" + l.name + "' appears twice");
    if (!by_name.count(l.name))
      throw PolicyError(who + ": unknown layer '" + l.name + "' (model " + model.name() +
                        " has: " + join_names(model_names) + ")");
  }
  std::vector<std::string> missing;
  for (const auto& n : model_names)
    if (!seen.count(n)) missing.push_back(n);
  if (!missing.empty())
    throw PolicyError(who + ": layer" + (missing.size() > 1 ? "s " : " ") + join_names(missing) + " of " +
                      model.name() + " missing from the policy (every quantizable layer needs an entry; "
                      "use \"weight\": \"fp32\" to keep one in float)");

  // The reader orders the layers by their "index"; permuted indices would put each spec on another layer.
  for (size_t i = 0; i < p.layers.size() && i < model_names.size(); ++i)
    if (p.layers[i].name != model_names[i])
      throw PolicyError(who + ": layer '" + p.layers[i].name + "' has index " + std::to_string(i) + ", but it is layer " +
                        std::to_string(std::find(model_names.begin(), model_names.end(), p.layers[i].name) -
                                       model_names.begin()) +
                        " of " + model.name() + " (the indices are permuted; layer " + std::to_string(i) + " is '" +
                        model_names[i] + "')");

  Policy expect = p;  // recomputed facts
  for (auto& l : expect.layers) {
    const LayerProfile& f = *by_name.at(l.name);
    const std::string at = who + ": layer '" + l.name + "': ";
    if (l.shape != f.weight_shape)
      throw PolicyError(at + "weight shape " + shape_string(l.shape) + " in the policy, " + shape_string(f.weight_shape) +
                        " in the model (a policy for another model or input size?)");
    if (l.kind != f.kind) throw PolicyError(at + "kind '" + l.kind + "' in the policy, '" + f.kind + "' in the model");
    if (l.params != f.params || l.macs != f.macs || l.act_numel != f.input_numel)
      throw PolicyError(at + "params/macs/act_numel " + std::to_string(l.params) + "/" + std::to_string(l.macs) + "/" +
                        std::to_string(l.act_numel) + " in the policy, " + std::to_string(f.params) + "/" +
                        std::to_string(f.macs) + "/" + std::to_string(f.input_numel) +
                        " in the model (a policy for another input size? see model.input)");
    try {
      quant::validate_spec(l.weight, Role::Weight);
    } catch (const std::exception& e) {
      throw PolicyError(at + "weight '" + l.weight.to_string() + "': " + e.what());
    }
    try {
      quant::validate_spec(l.act, Role::Activation);
    } catch (const std::exception& e) {
      throw PolicyError(at + "act '" + l.act.to_string() + "': " + e.what());
    }
    try {  // a per-channel axis must exist in the tensor it splits
      if (!l.weight.is_fp()) quant::check_axis(l.weight, static_cast<int64_t>(f.weight_shape.size()), "the weight");
      if (!l.act.is_fp())
        quant::check_axis(l.act, static_cast<int64_t>(f.input_shape.size()) + 1, "the input activation (batch first)");
    } catch (const std::exception& e) {
      throw PolicyError(at + e.what());
    }
    check_channel_bits(l.channel_bits, l.weight, Role::Weight, l.shape[0], "channel_bits", "the layer",
                       "output channels", at);
    check_channel_bits(l.act_channel_bits, l.act, Role::Activation, f.input_shape.empty() ? 0 : f.input_shape[0],
                       "act_channel_bits", "the layer's input", "channels", at);
    if (!l.bias_correction.empty()) {
      try {
        quant::parse_correction(l.bias_correction);
      } catch (const std::exception& e) {
        throw PolicyError(at + "bias_correction: " + e.what());
      }
      if (l.weight.is_fp()) throw PolicyError(at + "bias_correction on a float (fp32) weight");
    }
  }
  if (p.fingerprint != model_fingerprint(model))
    throw PolicyError(who + ": fingerprint " + p.fingerprint + " does not match the model's " +
                      model_fingerprint(model) + " (layer order differs?)");
  update_totals(expect);
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const auto &a = p.layers[i], &b = expect.layers[i];
    const std::string at = who + ": layer '" + a.name + "': ";
    if (a.weight_bytes != b.weight_bytes)
      throw PolicyError(at + "weight_bytes " + std::to_string(a.weight_bytes) + " does not match its weight spec '" +
                        a.weight.to_string() + "' (" + std::to_string(b.weight_bytes) +
                        " bytes); edited by hand? rewrite the policy with the tools");
    if (!same_double(a.weight_bits, b.weight_bits))
      throw PolicyError(at + "weight_bits " + std::to_string(a.weight_bits) + " does not match weight_bytes (" +
                        std::to_string(b.weight_bits) + ")");
    if (a.act_bits != b.act_bits)
      throw PolicyError(at + "act_bits " + std::to_string(a.act_bits) + " does not match act spec '" +
                        a.act.to_string() + "' (" + std::to_string(b.act_bits) + ")");
  }
  const auto &t = p.totals, &e = expect.totals;
  auto tot = [&](const char* key, bool ok, const std::string& have, const std::string& want) {
    if (!ok)
      throw PolicyError(who + ": totals." + key + " is " + have + ", the layers add up to " + want);
  };
  tot("params", t.params == e.params, std::to_string(t.params), std::to_string(e.params));
  tot("weight_bytes", t.weight_bytes == e.weight_bytes, std::to_string(t.weight_bytes), std::to_string(e.weight_bytes));
  tot("fp32_weight_bytes", t.fp32_weight_bytes == e.fp32_weight_bytes, std::to_string(t.fp32_weight_bytes),
      std::to_string(e.fp32_weight_bytes));
  tot("avg_weight_bits", same_double(t.avg_weight_bits, e.avg_weight_bits), std::to_string(t.avg_weight_bits),
      std::to_string(e.avg_weight_bits));
  tot("act_bytes", t.act_bytes == e.act_bytes, std::to_string(t.act_bytes), std::to_string(e.act_bytes));
  tot("bops", same_double(t.bops, e.bops), std::to_string(t.bops), std::to_string(e.bops));
}

}  // namespace autoqnn
