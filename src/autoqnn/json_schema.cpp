#include "autoqnn/json_schema.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "autoqnn/json_io.h"
#include "autoqnn/runtime.h"

namespace autoqnn {

using nlohmann::json;

namespace {
constexpr size_t kMaxRegexInput = 1024;

const std::set<std::string>& known_keywords() {
  static const std::set<std::string> k = {
      // checked
      "type", "enum", "const", "required", "properties", "additionalProperties", "propertyNames", "items",
      "minItems", "maxItems", "minLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
      "anyOf", "$ref",
      // annotations
      "$schema", "$id", "$comment", "title", "description", "default", "examples", "definitions", "$defs"};
  return k;
}

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

bool type_matches(const std::string& t, const json& v) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "number") return v.is_number();
  if (t == "integer") {
    if (v.is_number_integer()) return true;
    if (v.is_number_float()) {
      double d = v.get<double>();
      return std::isfinite(d) && std::floor(d) == d;
    }
    return false;
  }
  return false;
}

std::string short_dump(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace

JsonSchema::JsonSchema(json schema) : root_(std::move(schema)) { compile(root_, "#"); }

JsonSchema JsonSchema::load(const std::string& path) {
  json j;
  try {
    j = read_json_file(path);
  } catch (const std::exception& e) {
    throw SchemaError("schema '" + path + "' is not valid JSON: " + e.what());
  }
  try {
    return JsonSchema(std::move(j));
  } catch (const SchemaError& e) {
    throw SchemaError("schema '" + path + "': " + e.what());
  }
}

void JsonSchema::compile(const json& s, const std::string& where) {
  if (s.is_boolean()) return;
  if (!s.is_object()) throw SchemaError(where + ": a schema must be an object or a boolean");
  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& k = it.key();
    if (!known_keywords().count(k))
      throw SchemaError(where + ": unsupported keyword '" + k + "'");
  }
  if (s.contains("type")) {
    const json& t = s["type"];
    auto ok = [](const json& x) {
      static const std::set<std::string> types = {"object", "array", "string", "boolean", "null", "number", "integer"};
      return x.is_string() && types.count(x.get<std::string>());
    };
    bool good = ok(t) || (t.is_array() && !t.empty() && std::all_of(t.begin(), t.end(), ok));
    if (!good) throw SchemaError(where + "/type: unknown type " + t.dump());
  }
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) throw SchemaError(where + "/pattern: must be a string");
    const std::string pat = s["pattern"].get<std::string>();
    if (!regex_.count(pat)) {
      try {
        regex_.emplace(pat, std::regex(pat, std::regex::ECMAScript));
      } catch (const std::regex_error& e) {
        throw SchemaError(where + "/pattern: invalid regular expression '" + pat + "': " + e.what());
      }
    }
  }
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) throw SchemaError(where + "/$ref: must be a string");
    resolve(s["$ref"].get<std::string>());
  }
  if (s.contains("required") && !s["required"].is_array()) throw SchemaError(where + "/required: must be an array");
  if (s.contains("enum") && !s["enum"].is_array()) throw SchemaError(where + "/enum: must be an array");
  for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
    if (s.contains(k) && !s[k].is_number()) throw SchemaError(where + "/" + k + ": must be a number");
  for (const char* k : {"minItems", "maxItems", "minLength"})
    if (s.contains(k) && !s[k].is_number_unsigned()) throw SchemaError(where + "/" + k + ": must be a non-negative integer");
  for (const char* k : {"properties", "definitions", "$defs"}) {
    if (!s.contains(k)) continue;
    if (!s[k].is_object()) throw SchemaError(where + "/" + k + ": must be an object");
    for (auto it = s[k].begin(); it != s[k].end(); ++it) compile(it.value(), where + "/" + k + "/" + escape_pointer(it.key()));
  }
  for (const char* k : {"additionalProperties", "items", "propertyNames"})
    if (s.contains(k)) compile(s[k], where + "/" + k);
  if (s.contains("anyOf")) {
    if (!s["anyOf"].is_array() || s["anyOf"].empty()) throw SchemaError(where + "/anyOf: must be a non-empty array");
    for (size_t i = 0; i < s["anyOf"].size(); ++i) compile(s["anyOf"][i], where + "/anyOf/" + std::to_string(i));
  }
}

const json& JsonSchema::resolve(const std::string& ref) const {
  for (const char* prefix : {"#/definitions/", "#/$defs/"}) {
    std::string p = prefix;
    if (ref.compare(0, p.size(), p) != 0) continue;
    std::string name = ref.substr(p.size());
    auto defs = root_.find(p.substr(2, p.size() - 3));
    if (defs == root_.end() || !defs->is_object()) throw SchemaError("$ref '" + ref + "' points to nothing");
    auto it = defs->find(name);
    if (it == defs->end()) throw SchemaError("$ref '" + ref + "' points to nothing");
    return *it;
  }
  throw SchemaError("$ref '" + ref + "': only local references #/definitions/NAME or #/$defs/NAME are supported");
}

void JsonSchema::walk(const json& s, const json& v, const std::string& path, std::vector<SchemaViolation>& out,
                      size_t max_errors, int depth) const {
  if (out.size() >= max_errors) return;
  if (depth > 64) {
    out.push_back({path, "schema recursion deeper than 64 ($ref cycle?)"});
    return;
  }
  auto bad = [&](const std::string& msg) {
    if (out.size() < max_errors) out.push_back({path, msg});
  };
  if (s.is_boolean()) {
    if (!s.get<bool>()) bad("no value is allowed here");
    return;
  }
  if (s.contains("$ref")) walk(resolve(s["$ref"].get<std::string>()), v, path, out, max_errors, depth + 1);

  if (s.contains("type")) {
    const json& t = s["type"];
    bool ok = false;
    if (t.is_string()) ok = type_matches(t.get<std::string>(), v);
    else
      for (const auto& x : t) ok = ok || type_matches(x.get<std::string>(), v);
    if (!ok) {
      bad("expected type " + (t.is_string() ? t.get<std::string>() : t.dump()) + ", got " +
          (v.is_number_integer() ? std::string("integer") : std::string(v.type_name())));
      return;  // the other keywords would only repeat the type error
    }
  }
  if (s.contains("const") && v != s["const"]) bad("must be " + short_dump(s["const"]) + ", got " + short_dump(v));
  if (s.contains("enum")) {
    bool ok = false;
    for (const auto& e : s["enum"]) ok = ok || e == v;
    if (!ok) bad(short_dump(v) + " is not one of " + short_dump(s["enum"]));
  }
  if (s.contains("anyOf")) {
    bool ok = false;
    for (const auto& alt : s["anyOf"]) {
      std::vector<SchemaViolation> tmp;
      walk(alt, v, path, tmp, 1, depth + 1);
      if (tmp.empty()) {
        ok = true;
        break;
      }
    }
    if (!ok) bad("matches none of the anyOf alternatives");
  }
  if (v.is_number()) {
    double x = v.get<double>();
    if (s.contains("minimum") && x < s["minimum"].get<double>()) bad(short_dump(v) + " < minimum " + s["minimum"].dump());
    if (s.contains("maximum") && x > s["maximum"].get<double>()) bad(short_dump(v) + " > maximum " + s["maximum"].dump());
    if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>())
      bad(short_dump(v) + " <= exclusiveMinimum " + s["exclusiveMinimum"].dump());
    if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>())
      bad(short_dump(v) + " >= exclusiveMaximum " + s["exclusiveMaximum"].dump());
  }
  if (v.is_string()) {
    const std::string& str = v.get_ref<const std::string&>();
    if (s.contains("minLength") && str.size() < s["minLength"].get<size_t>())
      bad("shorter than minLength " + s["minLength"].dump());
    if (s.contains("pattern")) {
      const std::string pat = s["pattern"].get<std::string>();
      // libstdc++'s regex recurses per character: a very long string would overflow the stack
      if (str.size() > kMaxRegexInput)
        bad("a string of " + std::to_string(str.size()) + " characters, too long to match against pattern " + pat +
            " (at most " + std::to_string(kMaxRegexInput) + ")");
      else if (!std::regex_search(str, regex_.at(pat))) bad(short_dump(v) + " does not match pattern " + pat);
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>())
      bad(std::to_string(v.size()) + " items, fewer than minItems " + s["minItems"].dump());
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>())
      bad(std::to_string(v.size()) + " items, more than maxItems " + s["maxItems"].dump());
    if (s.contains("items"))
      for (size_t i = 0; i < v.size(); ++i) walk(s["items"], v[i], path + "/" + std::to_string(i), out, max_errors, depth + 1);
  }
  if (v.is_object()) {
    if (s.contains("required"))
      for (const auto& k : s["required"])
        if (k.is_string() && !v.contains(k.get<std::string>()))
          bad("missing required property '" + k.get<std::string>() + "'");
    const json* props = s.contains("properties") ? &s["properties"] : nullptr;
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string child = path + "/" + escape_pointer(it.key());
      if (s.contains("propertyNames")) {
        std::vector<SchemaViolation> tmp;
        walk(s["propertyNames"], json(it.key()), child, tmp, max_errors, depth + 1);
        for (auto& t : tmp) bad("property name '" + it.key() + "': " + t.message);
      }
      if (props && props->contains(it.key())) {
        walk((*props)[it.key()], it.value(), child, out, max_errors, depth + 1);
      } else if (s.contains("additionalProperties")) {
        const json& ap = s["additionalProperties"];
        if (ap.is_boolean() && !ap.get<bool>()) bad("unknown property '" + it.key() + "' (additionalProperties: false)");
        else if (!ap.is_boolean()) walk(ap, it.value(), child, out, max_errors, depth + 1);
      }
    }
  }
}

std::vector<SchemaViolation> JsonSchema::validate(const json& doc, size_t max_errors) const {
  std::vector<SchemaViolation> out;
  walk(root_, doc, "", out, std::max<size_t>(1, max_errors), 0);
  return out;
}

void JsonSchema::check(const json& doc, const std::string& what) const {
  auto v = validate(doc);
  if (v.empty()) return;
  std::string msg = what + ": " + std::to_string(v.size()) + (v.size() >= 50 ? "+" : "") + " schema violation" +
                    (v.size() > 1 ? "s" : "") + ":";
  for (size_t i = 0; i < v.size() && i < 10; ++i) msg += "\n  " + (v[i].path.empty() ? "/" : v[i].path) + ": " + v[i].message;
  throw SchemaError(msg);
}

}  // namespace autoqnn
