// Quantizer spec strings: "scheme[:bits][:key=value|:flag]..." e.g. "fixed:4", "esb:4:k=1",
// "uniform:8:per_channel", "twn", "afp:5:e=2". The same strings appear in policy JSON and search spaces.
#pragma once
#include <map>
#include <string>

namespace autoqnn::quant {

struct QuantSpec {
  std::string scheme;                         // registry name, lower case ("fp32" = no quantization)
  int bits = 0;                               // 0 = scheme default / not applicable
  std::map<std::string, std::string> params;  // key=value params; bare flags stored with value ""

  // Parses a spec; throws std::invalid_argument naming the bad part. Does NOT validate the scheme
  // against the registry (see registry.h: make_quantizer / validate_spec).
  static QuantSpec parse(const std::string& text);
  // Canonical text: scheme, bits (if > 0), then params in key order. parse(to_string()) == *this.
  std::string to_string() const;

  bool is_fp() const { return scheme == "fp32" || scheme == "fp" || scheme.empty(); }
  bool has(const std::string& key) const { return params.count(key) > 0; }
  std::string get(const std::string& key, const std::string& dflt) const;
  double get_double(const std::string& key, double dflt) const;  // throws naming key on bad value
  int get_int(const std::string& key, int dflt) const;
  bool flag(const std::string& key) const { return has(key); }  // per_channel, ...

  bool operator==(const QuantSpec& o) const {
    return scheme == o.scheme && bits == o.bits && params == o.params;
  }
  bool operator!=(const QuantSpec& o) const { return !(*this == o); }
};

}  // namespace autoqnn::quant
