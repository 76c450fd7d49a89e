#include "search/search_space.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "autoqnn/act_stats.h"
#include "autoqnn/json_io.h"
#include "autoqnn/runtime.h"
#include "quantizers/registry.h"

namespace autoqnn::search {

using nlohmann::json;
using quant::QuantSpec;
using quant::Role;

const char* granularity_name(Granularity g) { return g == Granularity::Shared ? "shared" : "per-layer"; }

std::string CandidateSet::label(int64_t c) const {
  return weight.at(weight_index(c)).to_string() + " / " + act.at(act_index(c)).to_string();
}

std::string CandidateSet::signature() const {
  std::string s = "w:";
  for (const auto& w : weight) s += w.to_string() + ",";
  s += "|a:";
  for (const auto& a : act) s += a.to_string() + ",";
  return s;
}

// ------------------------------------------------------------------ brace expansion
namespace {

std::vector<int> parse_int_set(const std::string& body, const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(body);
  std::string item;
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("'" + text + "': " + why + " (write a set as {3,4,5} or a range as {2..8})");
  };
  auto to_int = [&](std::string s) {
    size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
    if (a == std::string::npos) throw bad("empty element in '{" + body + "}'");
    s = s.substr(a, b - a + 1);
    for (char ch : s)
      if (ch < '0' || ch > '9') throw bad("'" + s + "' in '{" + body + "}' is not a non-negative integer");
    if (s.size() > 3) throw bad("'" + s + "' in '{" + body + "}' is too large");
    return std::stoi(s);
  };
  while (std::getline(ss, item, ',')) {
    auto dots = item.find("..");
    if (dots != std::string::npos) {
      int lo = to_int(item.substr(0, dots)), hi = to_int(item.substr(dots + 2));
      if (hi < lo) throw bad("reversed range '" + item + "'");
      for (int v = lo; v <= hi; ++v) out.push_back(v);
    } else {
      out.push_back(to_int(item));
    }
  }
  if (out.empty() || (!body.empty() && body.back() == ',')) throw bad("empty set or trailing comma in '{" + body + "}'");
  return out;
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& text) {
  auto open = text.find('{');
  auto close_first = text.find('}');
  if (open == std::string::npos) {
    if (close_first != std::string::npos) throw std::invalid_argument("'" + text + "': '}' without '{'");
    return {text};
  }
  auto close = text.find('}', open);
  if (close == std::string::npos) throw std::invalid_argument("'" + text + "': '{' without '}'");
  if (close_first < open) throw std::invalid_argument("'" + text + "': '}' without '{'");
  std::string body = text.substr(open + 1, close - open - 1);
  if (body.find('{') != std::string::npos) throw std::invalid_argument("'" + text + "': nested '{'");
  std::vector<int> values = parse_int_set(body, text);
  std::vector<std::string> out;
  std::set<int> seen;
  for (int v : values) {
    if (!seen.insert(v).second)
      throw std::invalid_argument("'" + text + "': value " + std::to_string(v) + " listed twice");
    for (auto& rest : expand_braces(text.substr(close + 1)))
      out.push_back(text.substr(0, open) + std::to_string(v) + rest);
  }
  return out;
}

bool glob_match(const std::string& p, const std::string& t) {
  // Iterative matcher with single-star backtracking (linear in practice).
  size_t pi = 0, ti = 0, star = std::string::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

// ------------------------------------------------------------------ JSON parsing
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& what) {
  throw std::invalid_argument(source + ": " + key + ": " + what);
}

std::vector<QuantSpec> parse_spec_list(const json& j, Role role, const std::string& source, const std::string& key) {
  if (!j.is_array()) fail(source, key, "must be a list of quantizer specs, e.g. [\"esb:{3,4,5}:k=1\", \"twn\"]");
  if (j.empty()) fail(source, key, "must list at least one candidate");
  std::vector<QuantSpec> out;
  std::map<std::string, std::string> where;  // canonical spec -> key
  for (size_t i = 0; i < j.size(); ++i) {
    std::string k = key + "[" + std::to_string(i) + "]";
    if (!j[i].is_string()) fail(source, k, "must be a spec string, got " + std::string(j[i].type_name()));
    const std::string text = j[i].get<std::string>();
    std::vector<std::string> expanded;
    try {
      expanded = expand_braces(text);
    } catch (const std::invalid_argument& e) {
      fail(source, k, e.what());
    }
    for (const auto& one : expanded) {
      QuantSpec spec;
      try {
        spec = quant::validate_spec(QuantSpec::parse(one), role);  // the scheme row's checks too
      } catch (const std::exception& e) {
        fail(source, k, "'" + one + "' as a " + quant::role_name(role) + " candidate: " + e.what());
      }
      std::string canon = spec.to_string();
      if (where.count(canon)) fail(source, k, "candidate '" + canon + "' repeats " + where[canon]);
      where[canon] = k;
      out.push_back(spec);
    }
  }
  return out;
}

void check_keys(const json& j, const std::vector<std::string>& valid, const std::string& source,
                const std::string& where) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(valid.begin(), valid.end(), it.key()) != valid.end()) continue;
    std::string v;
    for (const auto& s : valid) v += (v.empty() ? "" : ", ") + s;
    fail(source, where.empty() ? it.key() : where + "." + it.key(), "unknown key (valid: " + v + ")");
  }
}

}  // namespace

SearchSpace SearchSpace::from_json(const json& j, const std::string& source) {
  SearchSpace s;
  s.source = source;
  s.raw = j;
  if (!j.is_object()) fail(source, "(top level)", "must be a JSON object");
  check_keys(j, {"name", "description", "granularity", "weight", "act", "overrides", "comment", "act_by_input_sign",
                 "input_one_sided"},
             source, "");
  auto get_string = [&](const char* key, const std::string& dflt) {
    if (!j.contains(key)) return dflt;
    if (!j[key].is_string()) fail(source, key, "must be a string");
    return j[key].get<std::string>();
  };
  s.name = get_string("name", "");
  s.description = get_string("description", "");
  std::string g = get_string("granularity", "per-layer");
  if (g == "per-layer" || g == "layer" || g == "per_layer")
    s.granularity = Granularity::PerLayer;
  else if (g == "shared" || g == "model")
    s.granularity = Granularity::Shared;
  else
    fail(source, "granularity", "'" + g + "' is not one of per-layer, shared");
  if (j.contains("act_by_input_sign")) {
    if (!j["act_by_input_sign"].is_boolean()) fail(source, "act_by_input_sign", "must be true or false");
    s.act_by_input_sign = j["act_by_input_sign"].get<bool>();
  }
  if (j.contains("input_one_sided")) {
    const json& m = j["input_one_sided"];
    if (!m.is_object()) fail(source, "input_one_sided", "must be an object {layer: true|false}");
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it.value().is_boolean()) fail(source, "input_one_sided." + it.key(), "must be true or false");
      s.input_one_sided[it.key()] = it.value().get<bool>();
    }
  }
  if (!j.contains("weight")) fail(source, "weight", "missing (the list of weight candidates)");
  s.base.weight = parse_spec_list(j["weight"], Role::Weight, source, "weight");
  if (j.contains("act"))
    s.base.act = parse_spec_list(j["act"], Role::Activation, source, "act");
  else
    s.base.act = {quant::validate_spec(QuantSpec::parse("fp32"), Role::Activation)};
  if (j.contains("overrides")) {
    const json& ov = j["overrides"];
    if (!ov.is_array()) fail(source, "overrides", "must be a list of {\"layers\": ..., \"weight\"/\"act\": [...]}");
    for (size_t i = 0; i < ov.size(); ++i) {
      LayerOverride o;
      o.where = "overrides[" + std::to_string(i) + "]";
      const json& e = ov[i];
      if (!e.is_object()) fail(source, o.where, "must be an object");
      check_keys(e, {"layers", "weight", "act", "comment"}, source, o.where);
      if (!e.contains("layers")) fail(source, o.where + ".layers", "missing (\"first\", \"last\", a name or a glob)");
      const json& sel = e["layers"];
      if (sel.is_string()) {
        o.selectors.push_back(sel.get<std::string>());
      } else if (sel.is_array() && !sel.empty()) {
        for (size_t k = 0; k < sel.size(); ++k) {
          if (!sel[k].is_string())
            fail(source, o.where + ".layers[" + std::to_string(k) + "]", "must be a string");
          o.selectors.push_back(sel[k].get<std::string>());
        }
      } else {
        fail(source, o.where + ".layers", "must be a string or a non-empty list of strings");
      }
      for (const auto& sname : o.selectors)
        if (sname.empty()) fail(source, o.where + ".layers", "empty layer selector");
      if (e.contains("weight")) {
        o.has_weight = true;
        o.weight = parse_spec_list(e["weight"], Role::Weight, source, o.where + ".weight");
      }
      if (e.contains("act")) {
        o.has_act = true;
        o.act = parse_spec_list(e["act"], Role::Activation, source, o.where + ".act");
      }
      if (!o.has_weight && !o.has_act) fail(source, o.where, "sets neither \"weight\" nor \"act\"");
      s.overrides.push_back(std::move(o));
    }
  }
  return s;
}

SearchSpace SearchSpace::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open search space '" + path + "' (see configs/search_space/)");
  json j;
  try {
    j = read_json_file(path);  // bounded, duplicate keys refused (autoqnn/json_io.h)
  } catch (const std::exception& e) {
    throw std::invalid_argument("search space " + std::string(e.what()));
  }
  return from_json(j, path);
}

std::vector<CandidateSet> SearchSpace::resolve(const std::vector<std::string>& names) const {
  if (names.empty()) throw std::invalid_argument(source + ": the model has no quantizable layer");
  std::vector<CandidateSet> out(names.size(), base);
  for (const auto& o : overrides) {
    for (const auto& sel : o.selectors) {
      std::vector<size_t> hit;
      if (sel == "first") {
        hit.push_back(0);
      } else if (sel == "last") {
        hit.push_back(names.size() - 1);
      } else {
        for (size_t i = 0; i < names.size(); ++i)
          if (names[i] == sel || glob_match(sel, names[i])) hit.push_back(i);
      }
      if (hit.empty()) {
        std::string all;
        for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
        throw std::invalid_argument(source + ": " + o.where + ".layers: '" + sel +
                                    "' matches no layer of the model (layers: " + all + ")");
      }
      for (size_t i : hit) {
        if (o.has_weight) out[i].weight = o.weight;
        if (o.has_act) out[i].act = o.act;
      }
    }
  }
  if (act_by_input_sign) {
    if (input_one_sided.empty())
      throw std::logic_error(source + ": act_by_input_sign needs the layers' input signs (measure_input_signs)");
    for (size_t i = 0; i < names.size(); ++i) {
      auto sign = input_one_sided.find(names[i]);
      if (sign == input_one_sided.end())  // signs stored for another model (a foreign state or space file)
        throw std::invalid_argument(source + ": input_one_sided has no entry for layer '" + names[i] +
                                    "' (measured on another model?)");
      std::vector<QuantSpec> keep;
      bool quantized = false;
      for (const auto& a : out[i].act) {
        const bool suits = a.is_fp() || a.flag("asym") || quant::scheme_traits(a.scheme).is_signed != sign->second;
        if (!suits) continue;
        keep.push_back(a);
        quantized = quantized || !a.is_fp();
      }
      if (quantized) out[i].act = keep;
    }
  }
  return out;
}

void SearchSpace::set_input_signs(const std::map<std::string, bool>& one_sided) {
  input_one_sided = one_sided;
  raw["input_one_sided"] = json::object();
  for (const auto& [layer, v] : one_sided) raw["input_one_sided"][layer] = v;
}

void measure_input_signs(SearchSpace& space, Model& model, const TensorDataset& train, uint64_t seed) {
  if (!space.act_by_input_sign || !space.input_one_sided.empty()) return;
  space.set_input_signs(ptq::inputs_one_sided(model, train, seed));
  int n = 0;
  for (const auto& [layer, v] : space.input_one_sided) n += v ? 1 : 0;
  log_info("search space: act candidates by input sign: " + std::to_string(n) + " of " +
           std::to_string(space.input_one_sided.size()) + " layers have non-negative inputs (unsigned acts)");
}

}  // namespace autoqnn::search
