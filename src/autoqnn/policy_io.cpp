// The policy's JSON form: the writer (canonical JSON and the file form) and the strict reader, and the
// policy files (parse / load / save).
//
// One validator on the load path: Policy::from_json is the single source of truth for what a policy
// document may hold. Every reader of a policy (load_policy, parse_policy, policies embedded in
// checkpoints) goes through it, and only it: its errors name the file, line / column or key path, and it
// checks what a JSON Schema cannot (spec strings against the quantizer registry, format_version gating of
// the v2 keys, layer indices). configs/policy.schema.json is the published description of the format for
// other tools; the JSON-Schema validator (json_schema.h) is not run when a policy is loaded. It runs in
// `autoqnn policy check` only, after this reader, as a conformance check of the file against the published
// schema, and in the tests that keep the schema and this writer / reader in agreement.
#include "autoqnn/policy.h"

#include <filesystem>

#include "autoqnn/json_io.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autoqnn/runtime.h"
#include "quantizers/registry.h"

namespace autoqnn {

using nlohmann::json;
using nlohmann::ordered_json;
using quant::QuantSpec;
using quant::Role;

namespace {

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

}  // namespace

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
    if (l.kind != "conv1d" && l.kind != "conv2d" && l.kind != "conv3d" && l.kind != "linear")
      r.fail(base + ".kind", "'" + l.kind + "' (valid: conv1d, conv2d, conv3d, linear)");
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

Policy parse_policy(const std::string& text, const std::string& source) {
  json j;
  try {
    j = parse_json_text(text, source);  // bounded, duplicate keys refused, line / column / key in errors
  } catch (const JsonError& e) {
    throw PolicyError(e.what());
  }
  return Policy::from_json(j, source);
}

Policy load_policy(const std::string& path) {
  if (!file_exists(path)) throw PolicyError("policy file '" + path + "' does not exist");
  if (std::filesystem::is_directory(path)) throw PolicyError("policy '" + path + "' is a directory, not a JSON file");
  return parse_policy(read_text_file(path), path);
}

void save_policy(const std::string& path, const Policy& p) { atomic_write_text(path, p.dump()); }

}  // namespace autoqnn
