// The per-layer quantization policy: JSON form, validation against a model, totals, installation.
// Layout and field meanings: docs/policy.md; machine-checkable form: configs/policy.schema.json.
#include "autoqnn/adabits.h"
#include "autoqnn/policy.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "autoqnn/runtime.h"
#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn {

using nlohmann::json;
using nlohmann::ordered_json;
using quant::QuantSpec;
using quant::Role;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out.empty() ? "scalar" : out;
}

std::string json_type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// ---- strict readers: every error names the source and the key path ---------------------------------
struct Reader {
  std::string source;
  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw PolicyError(source + ": " + (path.empty() ? "" : path + ": ") + msg);
  }
  const json& get(const json& obj, const std::string& path, const std::string& key) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(path, "missing required key '" + key + "'");
    return *it;
  }
  void only_keys(const json& obj, const std::string& path, std::initializer_list<const char*> keys) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool ok = false;
      for (const char* k : keys) ok = ok || it.key() == k;
      if (!ok) {
        std::string valid;
        for (const char* k : keys) valid += (valid.empty() ? "" : ", ") + std::string(k);
        fail(path.empty() ? it.key() : path + "." + it.key(), "unknown key (valid here: " + valid + ")");
      }
    }
  }
  void object(const json& v, const std::string& path) const {
    if (!v.is_object()) fail(path, "expected an object, got " + json_type_name(v));
  }
  int64_t integer(const json& v, const std::string& path, int64_t lo = 0, int64_t hi = kInt64Max) const {
    if (!v.is_number_integer()) fail(path, "expected an integer, got " + json_type_name(v));
    int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kInt64Max) ? kInt64Max : v.get<int64_t>();
    if (x < lo || x > hi)
      fail(path, std::to_string(x) + " out of range [" + std::to_string(lo) + ", " +
                     (hi == kInt64Max ? std::string("inf") : std::to_string(hi)) + "]");
    return x;
  }
  double number(const json& v, const std::string& path) const {
    if (!v.is_number()) fail(path, "expected a number, got " + json_type_name(v));
    double x = v.get<double>();
    if (!std::isfinite(x) || x < 0) fail(path, "expected a finite non-negative number");
    return x;
  }
  std::string string(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string, got " + json_type_name(v));
    return v.get<std::string>();
  }
  std::vector<int64_t> int_array(const json& v, const std::string& path, int64_t lo) const {
    if (!v.is_array()) fail(path, "expected an array of integers, got " + json_type_name(v));
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(integer(v[i], path + "[" + std::to_string(i) + "]", lo));
    return out;
  }
  QuantSpec spec(const json& v, const std::string& path, Role role) const {
    std::string text = string(v, path);
    try {
      return quant::validate_spec(QuantSpec::parse(text), role);
    } catch (const std::exception& e) {
      fail(path, e.what());
    }
  }
};

// Bits of a spec as the policy counts them: fp32 -> 32.
int spec_bits(const QuantSpec& s) { return s.is_fp() ? 32 : s.bits; }

// Storage of a layer's weight under its spec (per-channel bits and the bias correction when given).
int64_t layer_weight_bytes(const LayerPolicy& l) {
  if (l.weight.is_fp()) return quant::storage_cost(l.weight, l.shape, Role::Weight).bytes();
  return quant::ChannelWeightQuantizer::storage_bytes(l.weight, l.shape, l.channel_bits,
                                                      quant::parse_correction(l.bias_correction));
}

double mean_bits(const std::vector<int>& bits, int dflt) {
  if (bits.empty()) return dflt;
  double s = 0;
  for (int b : bits) s += b;
  return s / static_cast<double>(bits.size());
}

// MACs x weight bits x act bits; with per-channel bits every (output, input) channel pair carries an equal
// share of the MACs, so the sum is MACs x mean weight bits x mean act bits.
double layer_bops(const LayerPolicy& l) {
  const double abits = l.act.is_fp() ? 32.0 : mean_bits(l.act_channel_bits, l.act_bits);
  const double wbits = l.weight.is_fp() ? 32.0 : mean_bits(l.channel_bits, spec_bits(l.weight));
  return static_cast<double>(l.macs) * wbits * abits;
}

// Bytes of the layer's quantized input activation per image (per-channel bits: channel by channel).
int64_t layer_act_bytes(const LayerPolicy& l) {
  if (l.act_channel_bits.empty() || l.act.is_fp()) return (l.act_numel * l.act_bits + 7) / 8;
  const int64_t per = l.act_numel / static_cast<int64_t>(l.act_channel_bits.size());
  int64_t bits = 0;
  for (int b : l.act_channel_bits) bits += per * b;
  return (bits + 7) / 8;
}

bool same_double(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); }

std::string join_names(const std::vector<std::string>& v, size_t max = 12) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max; ++i) out += (i ? ", " : "") + v[i];
  if (v.size() > max) out += ", ... (" + std::to_string(v.size()) + " in all)";
  return out;
}

std::string fmt_double(double v, int prec) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(prec) << v;
  return os.str();
}

}  // namespace

// ---------------------------------------------------------------- Policy members
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

namespace {
// The one serialisation; `Json` = json (sorted keys) or ordered_json (document order).
template <class Json>
Json policy_to(const Policy& p) {
  Json j;
  j["format_version"] = std::max(p.format_version, policy_required_version(p));
  Json m;
  m["name"] = p.model;
  m["fingerprint"] = p.fingerprint;
  m["input"] = Json::array({p.config.in_channels, p.config.image_size, p.config.image_size});
  m["num_classes"] = p.config.num_classes;
  j["model"] = std::move(m);
  Json layers = Json::object();
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const auto& l = p.layers[i];
    Json e;
    e["index"] = static_cast<int64_t>(i);
    e["kind"] = l.kind;
    e["weight"] = l.weight.to_string();
    e["act"] = l.act.to_string();
    if (!l.channel_bits.empty()) e["channel_bits"] = l.channel_bits;
    if (!l.act_channel_bits.empty()) e["act_channel_bits"] = l.act_channel_bits;
    if (!l.bias_correction.empty()) e["bias_correction"] = l.bias_correction;
    e["shape"] = l.shape;
    e["params"] = l.params;
    e["macs"] = l.macs;
    e["act_numel"] = l.act_numel;
    e["weight_bytes"] = l.weight_bytes;
    e["weight_bits"] = l.weight_bits;
    e["act_bits"] = l.act_bits;
    layers[l.name] = std::move(e);
  }
  j["layers"] = std::move(layers);
  const auto& t = p.totals;
  Json tj;
  tj["params"] = t.params;
  tj["weight_bytes"] = t.weight_bytes;
  tj["fp32_weight_bytes"] = t.fp32_weight_bytes;
  tj["avg_weight_bits"] = t.avg_weight_bits;
  tj["act_bytes"] = t.act_bytes;
  tj["bops"] = t.bops;
  j["totals"] = std::move(tj);
  if (!p.search.is_null()) j["search"] = Json::parse(p.search.dump());
  return j;
}
}  // namespace

json Policy::to_json() const { return policy_to<json>(*this); }

namespace {
// Pretty printer of the file form: like dump(2), but arrays of scalars stay on one line ("shape": [6, 1, 5, 5])
// so that a policy reads as one block per layer. Scalars are written by nlohmann (shortest round-trip form).
void pretty(const ordered_json& v, int indent, std::string& out) {
  auto scalar_array = [](const ordered_json& a) {
    for (const auto& x : a)
      if (x.is_structured()) return false;
    return true;
  };
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  if (v.is_object() && !v.empty()) {
    out += "{\n";
    size_t i = 0;
    for (auto it = v.begin(); it != v.end(); ++it, ++i) {
      out += pad + ordered_json(it.key()).dump() + ": ";
      pretty(it.value(), indent + 2, out);
      out += i + 1 < v.size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ') + "}";
  } else if (v.is_array() && !v.empty() && !scalar_array(v)) {
    out += "[\n";
    for (size_t i = 0; i < v.size(); ++i) {
      out += pad;
      pretty(v[i], indent + 2, out);
      out += i + 1 < v.size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ') + "]";
  } else if (v.is_array()) {
    out += "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i].dump();
    out += "]";
  } else {
    out += v.dump();
  }
}
}  // namespace

std::string Policy::dump() const {
  std::string out;
  pretty(policy_to<ordered_json>(*this), 0, out);
  return out + "\n";
}

Policy Policy::from_json(const json& j, const std::string& source) {
  Reader r{source};
  Policy p;
  r.object(j, "");
  r.only_keys(j, "", {"format_version", "model", "layers", "totals", "search"});
  p.format_version = static_cast<int>(r.integer(r.get(j, "", "format_version"), "format_version", 1, 1000000));
  if (p.format_version > kPolicyMaxFormatVersion)
    r.fail("format_version", "version " + std::to_string(p.format_version) +
                                 " is newer than this autoqnn reads (up to " +
                                 std::to_string(kPolicyMaxFormatVersion) + "); upgrade autoqnn");

  const json& m = r.get(j, "", "model");
  r.object(m, "model");
  r.only_keys(m, "model", {"name", "fingerprint", "input", "num_classes"});
  p.model = r.string(r.get(m, "model", "name"), "model.name");
  if (p.model.empty()) r.fail("model.name", "empty model name");
  p.fingerprint = r.string(r.get(m, "model", "fingerprint"), "model.fingerprint");
  auto input = r.int_array(r.get(m, "model", "input"), "model.input", 1);
  if (input.size() != 3 || input[1] != input[2])
    r.fail("model.input", "expected [channels, size, size] (square images)");
  p.config.in_channels = input[0];
  p.config.image_size = input[1];
  p.config.num_classes = r.integer(r.get(m, "model", "num_classes"), "model.num_classes", 1);

  const json& layers = r.get(j, "", "layers");
  r.object(layers, "layers");
  if (layers.empty()) r.fail("layers", "no layers");
  std::vector<std::pair<int64_t, LayerPolicy>> indexed;
  for (auto it = layers.begin(); it != layers.end(); ++it) {
    const std::string base = "layers." + it.key();
    const json& e = it.value();
    r.object(e, base);
    r.only_keys(e, base, {"index", "kind", "weight", "act", "channel_bits", "act_channel_bits", "bias_correction",
                          "shape", "params", "macs", "act_numel", "weight_bytes", "weight_bits", "act_bits"});
    LayerPolicy l;
    l.name = it.key();
    if (l.name.empty()) r.fail(base, "empty layer name");
    int64_t index = r.integer(r.get(e, base, "index"), base + ".index", 0, static_cast<int64_t>(layers.size()) - 1);
    l.kind = r.string(r.get(e, base, "kind"), base + ".kind");
    if (l.kind != "conv2d" && l.kind != "linear") r.fail(base + ".kind", "'" + l.kind + "' (valid: conv2d, linear)");
    l.weight = r.spec(r.get(e, base, "weight"), base + ".weight", Role::Weight);
    l.act = r.spec(r.get(e, base, "act"), base + ".act", Role::Activation);
    if (e.contains("channel_bits")) {
      if (p.format_version < 2) r.fail(base + ".channel_bits", "needs format_version 2 (the file says " +
                                                                   std::to_string(p.format_version) + ")");
      if (l.weight.is_fp()) r.fail(base + ".channel_bits", "a float (fp32) weight has no per-channel bits");
      for (auto b : r.int_array(e["channel_bits"], base + ".channel_bits", 1)) {
        if (b > 32) r.fail(base + ".channel_bits", "bits " + std::to_string(b) + " out of range [1, 32]");
        l.channel_bits.push_back(static_cast<int>(b));
      }
      if (l.channel_bits.empty()) r.fail(base + ".channel_bits", "empty (omit the key instead)");
    }
    if (e.contains("act_channel_bits")) {
      const std::string at = base + ".act_channel_bits";
      if (p.format_version < 2) r.fail(at, "needs format_version 2 (the file says " + std::to_string(p.format_version) + ")");
      if (l.act.is_fp()) r.fail(at, "a float (fp32) activation has no per-channel bits");
      for (auto b : r.int_array(e["act_channel_bits"], at, 1)) {
        if (b > 32) r.fail(at, "bits " + std::to_string(b) + " out of range [1, 32]");
        l.act_channel_bits.push_back(static_cast<int>(b));
      }
      if (l.act_channel_bits.empty()) r.fail(at, "empty (omit the key instead)");
    }
    if (e.contains("bias_correction")) {
      const std::string at = base + ".bias_correction";
      if (p.format_version < 2) r.fail(at, "needs format_version 2 (the file says " + std::to_string(p.format_version) + ")");
      l.bias_correction = r.string(e["bias_correction"], at);
      if (l.bias_correction != "mean" && l.bias_correction != "mean+var")
        r.fail(at, "'" + l.bias_correction + "' (valid: mean, mean+var)");
      if (l.weight.is_fp()) r.fail(at, "a float (fp32) weight has no bias correction");
    }
    l.shape = r.int_array(r.get(e, base, "shape"), base + ".shape", 1);
    if (l.shape.size() < 2) r.fail(base + ".shape", "expected at least 2 dimensions");
    l.params = r.integer(r.get(e, base, "params"), base + ".params", 1);
    l.macs = r.integer(r.get(e, base, "macs"), base + ".macs");
    l.act_numel = r.integer(r.get(e, base, "act_numel"), base + ".act_numel");
    l.weight_bytes = r.integer(r.get(e, base, "weight_bytes"), base + ".weight_bytes");
    l.weight_bits = r.number(r.get(e, base, "weight_bits"), base + ".weight_bits");
    l.act_bits = static_cast<int>(r.integer(r.get(e, base, "act_bits"), base + ".act_bits", 1, 32));
    indexed.emplace_back(index, std::move(l));
  }
  std::sort(indexed.begin(), indexed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < indexed.size(); ++i) {
    if (indexed[i].first != static_cast<int64_t>(i))
      r.fail("layers." + indexed[i].second.name + ".index",
             "layer indices must be 0.." + std::to_string(indexed.size() - 1) + ", each once");
    p.layers.push_back(std::move(indexed[i].second));
  }

  const json& t = r.get(j, "", "totals");
  r.object(t, "totals");
  r.only_keys(t, "totals", {"params", "weight_bytes", "fp32_weight_bytes", "avg_weight_bits", "act_bytes", "bops"});
  p.totals.params = r.integer(r.get(t, "totals", "params"), "totals.params");
  p.totals.weight_bytes = r.integer(r.get(t, "totals", "weight_bytes"), "totals.weight_bytes");
  p.totals.fp32_weight_bytes = r.integer(r.get(t, "totals", "fp32_weight_bytes"), "totals.fp32_weight_bytes");
  p.totals.avg_weight_bits = r.number(r.get(t, "totals", "avg_weight_bits"), "totals.avg_weight_bits");
  p.totals.act_bytes = r.integer(r.get(t, "totals", "act_bytes"), "totals.act_bytes");
  p.totals.bops = r.number(r.get(t, "totals", "bops"), "totals.bops");

  if (j.contains("search") && !j["search"].is_null()) {
    r.object(j["search"], "search");
    p.search = j["search"];
  }
  return p;
}

// ---------------------------------------------------------------- building
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

void update_totals(Policy& p) {
  PolicyTotals t;
  for (auto& l : p.layers) {
    try {
      l.weight = quant::validate_spec(l.weight, Role::Weight);
      l.weight_bytes = layer_weight_bytes(l);
    } catch (const std::exception& e) {
      throw PolicyError("layer '" + l.name + "': weight '" + l.weight.to_string() + "': " + e.what());
    }
    try {
      l.act = quant::validate_spec(l.act, Role::Activation);
    } catch (const std::exception& e) {
      throw PolicyError("layer '" + l.name + "': act '" + l.act.to_string() + "': " + e.what());
    }
    l.weight_bits = l.params > 0 ? 8.0 * static_cast<double>(l.weight_bytes) / static_cast<double>(l.params) : 0;
    l.act_bits = spec_bits(l.act);
    t.params += l.params;
    t.weight_bytes += l.weight_bytes;
    t.act_bytes = std::max(t.act_bytes, layer_act_bytes(l));
    t.bops += layer_bops(l);
  }
  t.fp32_weight_bytes = 4 * t.params;
  t.avg_weight_bits = t.params > 0 ? 8.0 * static_cast<double>(t.weight_bytes) / static_cast<double>(t.params) : 0;
  p.totals = t;
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

// ---------------------------------------------------------------- checking / applying
void check_policy(const Policy& p, Model& model) {
  const std::string who = "policy for '" + p.model + "'";
  if (p.model != model.name())
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

  Policy expect = p;  // recomputed facts
  for (auto& l : expect.layers) {
    const LayerProfile& f = *by_name.at(l.name);
    const std::string at = who + ": layer '" + l.name + "': ";
    if (l.shape != f.weight_shape)
      throw PolicyError(at + "weight shape " + shape_str(l.shape) + " in the policy, " + shape_str(f.weight_shape) +
                        " in the model (a policy for another model or input size?)");
    if (l.kind != f.kind) throw PolicyError(at + "kind '" + l.kind + "' in the policy, '" + f.kind + "' in the model");
    if (l.params != f.params || l.macs != f.macs || l.act_numel != f.input_numel)
      throw PolicyError(at + "params/macs/act_numel " + std::to_string(l.params) + "/" + std::to_string(l.macs) + "/" +
                        std::to_string(l.act_numel) + " in the policy, " + std::to_string(f.params) + "/" +
                        std::to_string(f.macs) + "/" + std::to_string(f.input_numel) +
                        " in the model (a policy for another input size? see model.input)");
    try {
      quant::make_quantizer(l.weight, Role::Weight);
    } catch (const std::exception& e) {
      throw PolicyError(at + "weight '" + l.weight.to_string() + "': " + e.what());
    }
    try {
      quant::make_quantizer(l.act, Role::Activation);
    } catch (const std::exception& e) {
      throw PolicyError(at + "act '" + l.act.to_string() + "': " + e.what());
    }
    if (!l.channel_bits.empty()) {
      if (static_cast<int64_t>(l.channel_bits.size()) != l.shape[0])
        throw PolicyError(at + "channel_bits has " + std::to_string(l.channel_bits.size()) + " entries, the layer " +
                          std::to_string(l.shape[0]) + " output channels");
      for (int b : l.channel_bits) {
        QuantSpec s = l.weight;
        s.bits = b;
        try {
          quant::validate_spec(s, Role::Weight);
        } catch (const std::exception& e) {
          throw PolicyError(at + "channel_bits: " + e.what());
        }
      }
    }
    if (!l.act_channel_bits.empty()) {
      const int64_t cin = f.input_shape.empty() ? 0 : f.input_shape[0];
      if (static_cast<int64_t>(l.act_channel_bits.size()) != cin)
        throw PolicyError(at + "act_channel_bits has " + std::to_string(l.act_channel_bits.size()) +
                          " entries, the layer's input " + std::to_string(cin) + " channels");
      for (int b : l.act_channel_bits) {
        QuantSpec s = l.act;
        s.bits = b;
        try {
          quant::validate_spec(s, Role::Activation);
        } catch (const std::exception& e) {
          throw PolicyError(at + "act_channel_bits: " + e.what());
        }
      }
    }
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

bool same_quantizers(const LayerPolicy& a, const LayerPolicy& b) {
  return a.name == b.name && a.weight == b.weight && a.act == b.act && a.channel_bits == b.channel_bits &&
         a.act_channel_bits == b.act_channel_bits && a.bias_correction == b.bias_correction;
}

void apply_policy(Model& model, const Policy& p) {
  check_policy(p, model);
  for (auto& nl : quant_layers(model)) {
    const LayerPolicy* l = p.find(nl.name);
    FakeQuantPtr wq, aq;
    try {
      if (!l->weight.is_fp() && (!l->channel_bits.empty() || !l->bias_correction.empty()))
        wq = std::make_shared<quant::ChannelWeightQuantizer>(l->weight, l->channel_bits,
                                                             quant::parse_correction(l->bias_correction), l->shape[0]);
      else
        wq = quant::make_quantizer(l->weight, Role::Weight);
      if (!l->act.is_fp() && !l->act_channel_bits.empty())
        aq = std::make_shared<quant::ChannelActQuantizer>(l->act, l->act_channel_bits);
      else
        aq = quant::make_quantizer(l->act, Role::Activation);
    } catch (const std::exception& e) {
      throw PolicyError("layer '" + l->name + "': " + e.what());
    }
    // Keep new quantizers on the layer's device and in the model's mode.
    auto dev = nl.layer->weight_param().device();
    if (wq) {
      wq->to(dev);
      wq->train(nl.module->is_training());
    }
    if (aq) {
      aq->to(dev);
      aq->train(nl.module->is_training());
    }
    nl.layer->set_weight_quantizer(wq);
    nl.layer->set_act_quantizer(aq);
  }
}

// ---------------------------------------------------------------- files
Policy parse_policy(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    // Line / column of the byte nlohmann reports (1-based position of the offending character).
    size_t upto = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    int64_t line = 1, col = 1;
    for (size_t i = 0; i < upto; ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string what = e.what();
    auto pos = what.find(": ", what.find("parse error"));
    std::string detail = pos == std::string::npos ? what : what.substr(pos + 2);
    throw PolicyError(source + ":" + std::to_string(line) + ":" + std::to_string(col) +
                      ": malformed JSON (line " + std::to_string(line) + ", column " + std::to_string(col) +
                      "): " + detail);
  }
  return Policy::from_json(j, source);
}

Policy load_policy(const std::string& path) {
  if (!file_exists(path)) throw PolicyError("policy file '" + path + "' does not exist");
  return parse_policy(read_text_file(path), path);
}

void save_policy(const std::string& path, const Policy& p) { atomic_write_text(path, p.dump()); }

// ---------------------------------------------------------------- table
std::string format_policy_table(const Policy& p) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"#", "layer", "kind", "shape", "params", "MACs", "weight", "act", "w bytes", "w bits"});
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const auto& l = p.layers[i];
    std::string w = l.weight.to_string();
    if (!l.channel_bits.empty()) w += " (per-channel bits)";
    if (!l.bias_correction.empty()) w += " +bc " + l.bias_correction;
    std::string a = l.act.to_string();
    if (!l.act_channel_bits.empty()) a += " (per-channel bits)";
    rows.push_back({std::to_string(i), l.name, l.kind, shape_str(l.shape), std::to_string(l.params),
                    std::to_string(l.macs), w, a, std::to_string(l.weight_bytes),
                    fmt_double(l.weight_bits, 2)});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  // numbers right-aligned, text left-aligned
  const std::vector<bool> right = {true, false, false, false, true, true, false, false, true, true};
  std::ostringstream os;
  os << "policy for " << p.model << " (" << p.fingerprint << ", input " << p.config.in_channels << "x"
     << p.config.image_size << "x" << p.config.image_size << ", format_version "
     << std::max(p.format_version, policy_required_version(p)) << ")\n";
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) {
      if (c) os << "  ";
      os << (right[c] ? std::right : std::left) << std::setw(static_cast<int>(width[c])) << r[c];
    }
    os << "\n";
  }
  const auto& t = p.totals;
  double ratio = t.weight_bytes > 0 ? static_cast<double>(t.fp32_weight_bytes) / t.weight_bytes : 0;
  os << "totals: " << t.params << " weights, " << t.weight_bytes << " bytes (fp32 " << t.fp32_weight_bytes << ", "
     << fmt_double(ratio, 2) << "x smaller), " << fmt_double(t.avg_weight_bits, 3) << " bits/weight on average\n"
     << "        activation footprint " << t.act_bytes << " bytes/image, " << std::setprecision(4) << t.bops / 1e9
     << " GBOPs/image\n";
  if (!p.search.is_null()) {
    os << "search: ";
    bool first = true;
    for (const char* k : {"method", "budget", "seed", "version"}) {
      if (!p.search.contains(k)) continue;
      os << (first ? "" : ", ") << k << " " << (p.search[k].is_string() ? p.search[k].get<std::string>() : p.search[k].dump());
      first = false;
    }
    if (first) os << "(provenance recorded)";
    os << "\n";
  }
  return os.str();
}

}  // namespace autoqnn
