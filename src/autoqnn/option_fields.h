// Typed options <-> JSON through one table of fields per options struct, instead of a hand-written key
// loop per struct. JSON is only the options' form inside state files and provenance; code passes the
// typed struct.
//
//   static const OptionFields<QplOptions> f = OptionFields<QplOptions>("qpl")
//       .member("bits_min", &QplOptions::bits_min)
//       .field("sampling", get, set);                 // anything that is not a plain member
//   QplOptions o = f.from_json(j);                     // unknown keys / wrong types name the key
//   json j = f.to_json(o);
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace autoqnn {

template <class T>
class OptionFields {
 public:
  using Json = nlohmann::json;
  using Getter = std::function<Json(const T&)>;  // a null Json = omitted from to_json
  using Setter = std::function<void(T&, const Json&)>;

  explicit OptionFields(std::string what) : what_(std::move(what)) {}

  // A field with its own conversion (enums, nested structs, optional keys).
  OptionFields& field(std::string key, Getter get, Setter set) {
    fields_.push_back({std::move(key), std::move(get), std::move(set)});
    return *this;
  }

  // A plain member: double, int, bool, std::string or Json; the JSON type is checked on read.
  template <class V>
  OptionFields& member(const std::string& key, V T::*m) {
    const std::string what = what_;
    return field(
        key, [m](const T& o) { return Json(o.*m); },
        [m, key, what](T& o, const Json& v) { o.*m = OptionFields::convert<V>(v, what, key); });
  }

  Json to_json(const T& o) const {
    Json j = Json::object();
    for (const auto& f : fields_) {
      Json v = f.get(o);
      if (!v.is_null()) j[f.key] = std::move(v);
    }
    return j;
  }

  // Starts from `o` (defaults) and sets every key of `j`; null = the defaults.
  T from_json(const Json& j, T o = T()) const {
    if (j.is_null()) return o;
    if (!j.is_object()) throw std::invalid_argument(what_ + " options must be a JSON object");
    for (auto it = j.begin(); it != j.end(); ++it) {
      const Entry* f = find(it.key());
      if (!f) throw std::invalid_argument("unknown " + what_ + " option '" + it.key() + "' (valid: " + keys() + ")");
      f->set(o, it.value());
    }
    return o;
  }

  std::string keys() const {
    std::string s;
    for (const auto& f : fields_) s += (s.empty() ? "" : ", ") + f.key;
    return s;
  }

  // The JSON -> V conversion of member(), for setters of custom fields.
  template <class V>
  static V convert(const Json& v, const std::string& what, const std::string& key) {
    auto bad = [&](const char* want) {
      return std::invalid_argument(what + " option '" + key + "' must be " + want);
    };
    if constexpr (std::is_same_v<V, bool>) {
      if (!v.is_boolean()) throw bad("true or false");
      return v.get<bool>();
    } else if constexpr (std::is_integral_v<V>) {
      if (!v.is_number_integer()) throw bad("an integer");
      return v.get<V>();
    } else if constexpr (std::is_floating_point_v<V>) {
      if (!v.is_number()) throw bad("a number");
      return v.get<V>();
    } else if constexpr (std::is_same_v<V, std::string>) {
      if (!v.is_string()) throw bad("a string");
      return v.get<std::string>();
    } else {
      static_assert(std::is_same_v<V, Json>, "OptionFields: unsupported member type");
      return v;
    }
  }

 private:
  struct Entry {
    std::string key;
    Getter get;
    Setter set;
  };
  const Entry* find(const std::string& key) const {
    for (const auto& f : fields_)
      if (f.key == key) return &f;
    return nullptr;
  }
  std::string what_;
  std::vector<Entry> fields_;
};

}  // namespace autoqnn
