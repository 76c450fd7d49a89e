#include "quantizers/spec.h"

#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace autoqnn::quant {
namespace {
std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}
bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}
}  // namespace

QuantSpec QuantSpec::parse(const std::string& text) {
  QuantSpec s;
  std::string t = trim(text);
  if (t.empty()) throw std::invalid_argument("empty quantizer spec");
  std::vector<std::string> parts;
  std::stringstream ss(t);
  std::string part;
  while (std::getline(ss, part, ':')) parts.push_back(trim(part));
  s.scheme = parts[0];
  for (auto& c : s.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s.scheme.empty()) throw std::invalid_argument("quantizer spec '" + text + "': missing scheme name");
  size_t i = 1;
  if (parts.size() > 1 && all_digits(parts[1])) {
    s.bits = parts[1].size() > 3 ? 0 : std::stoi(parts[1]);  // "99999999999" is out of range, not a stoi error
    if (s.bits <= 0 || s.bits > 32)
      throw std::invalid_argument("quantizer spec '" + text + "': bits " + parts[1] + " out of range");
    i = 2;
  }
  for (; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p.empty()) throw std::invalid_argument("quantizer spec '" + text + "': empty field");
    auto eq = p.find('=');
    if (eq == std::string::npos) {
      if (all_digits(p))
        throw std::invalid_argument("quantizer spec '" + text + "': bits given twice or out of place ('" + p + "')");
      s.params[p] = "";
    } else {
      std::string k = trim(p.substr(0, eq)), v = trim(p.substr(eq + 1));
      if (k.empty() || v.empty())
        throw std::invalid_argument("quantizer spec '" + text + "': malformed parameter '" + p + "'");
      if (s.params.count(k))
        throw std::invalid_argument("quantizer spec '" + text + "': parameter '" + k + "' given twice");
      s.params[k] = v;
    }
  }
  return s;
}

std::string QuantSpec::to_string() const {
  std::string out = scheme;
  if (bits > 0) out += ":" + std::to_string(bits);
  for (const auto& [k, v] : params) out += v.empty() ? ":" + k : ":" + k + "=" + v;
  return out;
}

std::string QuantSpec::get(const std::string& key, const std::string& dflt) const {
  auto it = params.find(key);
  return it == params.end() ? dflt : it->second;
}

double QuantSpec::get_double(const std::string& key, double dflt) const {
  auto it = params.find(key);
  if (it == params.end()) return dflt;
  try {
    size_t pos = 0;
    double v = std::stod(it->second, &pos);
    if (pos != it->second.size()) throw std::invalid_argument("trailing");
    if (std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  // NaN / inf pass every range check (all comparisons are false), so they are refused here
  throw std::invalid_argument("quantizer spec '" + to_string() + "': parameter '" + key +
                              "' needs a finite number, got '" + it->second + "'");
}

int QuantSpec::get_int(const std::string& key, int dflt) const {
  auto it = params.find(key);
  if (it == params.end()) return dflt;
  if (!all_digits(it->second) && !(it->second.size() > 1 && it->second[0] == '-' && all_digits(it->second.substr(1))))
    throw std::invalid_argument("quantizer spec '" + to_string() + "': parameter '" + key +
                                "' needs an integer, got '" + it->second + "'");
  if (it->second.size() > 9)
    throw std::invalid_argument("quantizer spec '" + to_string() + "': parameter '" + key + "' = " + it->second +
                                " is out of range");
  return std::stoi(it->second);
}

}  // namespace autoqnn::quant
