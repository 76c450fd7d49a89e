#include "quantizers/registry.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace autoqnn::quant {

// The functions of scheme X, defined in quantizers/X.cpp: make_X, validate_X (only where the row names
// it), storage_X.
#define AUTOQNN_SCHEME(X)                                          \
  QuantizerPtr make_##X(const QuantSpec&, Role);                   \
  void validate_##X(const QuantSpec&, Role);                       \
  StorageCost storage_##X(const QuantSpec&, at::IntArrayRef, Role)
AUTOQNN_SCHEME(binary);
AUTOQNN_SCHEME(ternary);
AUTOQNN_SCHEME(fixed);
AUTOQNN_SCHEME(uniform);
AUTOQNN_SCHEME(zoomq);
AUTOQNN_SCHEME(pact);
AUTOQNN_SCHEME(sat);
AUTOQNN_SCHEME(residual);
AUTOQNN_SCHEME(vecq);
AUTOQNN_SCHEME(mul2q);
AUTOQNN_SCHEME(clipq);
AUTOQNN_SCHEME(pot);
AUTOQNN_SCHEME(esb);
AUTOQNN_SCHEME(apot);
AUTOQNN_SCHEME(afp);
#undef AUTOQNN_SCHEME

const std::vector<std::string>& common_param_keys() {
  static const std::vector<std::string> k = {"grad", "r", "per_channel", "axis", "momentum"};
  return k;
}

// The one table of per-scheme facts. Keep rows in the order `autoqnn quantizers` prints them.
// FNS(X): make_X, validate_X, storage_X; FNS_NO_VALIDATE(X): no scheme-specific checks.
#define FNS(X) make_##X, validate_##X, storage_##X
#define FNS_NO_VALIDATE(X) make_##X, nullptr, storage_##X
const std::vector<SchemeTraits>& scheme_table() {
  static const std::vector<SchemeTraits> table = {
      // name      bits      dflt signed  W     A   params, summary, param_keys, make / validate / storage
      {"binary", 1, 1, 1, true, true, false, "",
       "sign(W) * mean|W| (BWN)", {}, FNS_NO_VALIDATE(binary)},
      {"twn", 2, 2, 2, true, true, true, "",
       "ternary weight networks: {-a, 0, a}, delta = 0.7 mean|W|", {}, FNS_NO_VALIDATE(ternary)},
      {"fixed", 2, 16, 8, true, true, true, "",
       "fixed point with a power-of-two scale from max|x| (EMA of max|x| for activations)", {}, FNS_NO_VALIDATE(fixed)},
      {"uniform", 2, 16, 8, true, true, true, "asym: asymmetric min-max (zero point)",
       "uniform min-max: symmetric (scale = max|x| / (2^(b-1)-1)) or asymmetric", {"asym"}, FNS(uniform)},
      {"zoomq", 2, 16, 4, true, true, true, "",
       "ZoomQ: asymmetric min-max, levels min + a/2 + k a", {}, FNS_NO_VALIDATE(zoomq)},
      {"pact", 2, 16, 4, false, false, true, "alpha=6: initial clip",
       "PACT learned clip, calibrated gradient (CG-PACT); unsigned activations", {"alpha"}, FNS(pact)},
      {"sat", 1, 8, 4, true, true, false,
       "rescale: Q / sqrt(n_out Var[Q]) (layers without a following BatchNorm)",
       "SAT nested weights: tanh(W)/max|tanh W| on 2^b half-integer levels, codes nest across bitwidths",
       {"rescale"}, FNS(sat)},
      {"resq", 1, 8, 2, true, true, true, "",
       "residual quantization: sum of b binary residual terms", {}, FNS_NO_VALIDATE(residual)},
      {"vecq", 1, 8, 2, true, true, false, "",
       "VecQ: half-integer levels, lambda_b * std step, least-squares scale", {}, FNS_NO_VALIDATE(vecq)},
      {"mul2q", 1, 8, 2, true, true, false, "",
       "muL2Q: half-integer levels c * lambda_b * std + mean", {}, FNS_NO_VALIDATE(mul2q)},
      {"clipq", 2, 8, 4, true, true, false, "",
       "ClipQ: half-integer levels with step lambda_b * std, clipped STE", {}, FNS_NO_VALIDATE(clipq)},
      {"pot", 1, 4, 3, true, true, false, "",
       "powers of two: +-a{1/2, 2, .., 2^(E-1)} or {0} U +-a{1, .., 2^(E-2)} (E = 2^(b-1)), the set with the lower "
       "error per tensor, a fitted by least squares", {},
       FNS_NO_VALIDATE(pot)},
      {"esb", 2, 8, 4, true, true, false,
       "k=1: linear (significant) bits, 0 <= k <= bits-2; mean_shift: quantize W - mean and add it back",
       "elastic significant bits: sign + power-of-two binades with k linear bits, alpha = loc(b, lb) * std",
       {"k", "mean_shift"}, FNS(esb)},
      {"apot", 2, 5, 3, true, true, true,
       "alpha=3 (weights) / 8 (acts): initial learned clip; normalized: weights stay (W-mean)/std-scaled",
       "additive powers of two, learned clip alpha; weights (W-mean)/std normalised, acts unsigned",
       {"alpha", "normalized"}, FNS(apot)},
      {"afp", 2, 8, 5, true, true, false, "e=2: exponent bits, 1 <= e <= bits-1 (mantissa = bits - 1 - e)",
       "adaptive floating point: E exponent / M mantissa bits, exponent range adapted to max|W|", {"e"}, FNS(afp)},
  };
  return table;
}
#undef FNS
#undef FNS_NO_VALIDATE

namespace {
std::string names_list() {
  std::string s;
  for (const auto& t : scheme_table()) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s + ", fp32";
}
std::string alias(const std::string& n) {
  if (n == "ternary") return "twn";
  if (n == "residual") return "resq";
  if (n == "mul2q" || n == "mu-l2q" || n == "ul2q") return "mul2q";
  return n;
}
}  // namespace

const SchemeTraits& scheme_traits(const std::string& name) {
  const std::string n = alias(name);
  for (const auto& t : scheme_table())
    if (n == t.name) return t;
  throw std::invalid_argument("unknown quantizer scheme '" + name + "' (valid: " + names_list() + ")");
}

QuantSpec validate_spec(QuantSpec spec, Role role) {
  if (spec.is_fp()) {
    spec.scheme = "fp32";
    if (spec.bits != 0 && spec.bits != 32)
      throw std::invalid_argument("spec '" + spec.to_string() + "': fp32 takes no bitwidth");
    spec.bits = 0;
    return spec;
  }
  const auto& t = scheme_traits(spec.scheme);
  spec.scheme = t.name;
  if (spec.bits == 0) spec.bits = t.default_bits;
  if (role == Role::Weight && !t.weight_ok)
    throw std::invalid_argument("scheme '" + spec.scheme + "' cannot quantize weights (activations only)");
  if (role == Role::Activation && !t.act_ok)
    throw std::invalid_argument("scheme '" + spec.scheme + "' has no activation variant");
  if (spec.bits < t.min_bits || spec.bits > t.max_bits) {
    std::ostringstream os;
    os << "spec '" << spec.to_string() << "': " << spec.bits << " bits out of range for '" << t.name
       << "' (valid: " << t.min_bits;
    if (t.max_bits != t.min_bits) os << ".." << t.max_bits;
    os << ")";
    throw std::invalid_argument(os.str());
  }
  for (const auto& [k, v] : spec.params) {
    bool ok = std::find(common_param_keys().begin(), common_param_keys().end(), k) != common_param_keys().end() ||
              std::find(t.param_keys.begin(), t.param_keys.end(), k) != t.param_keys.end();
    if (!ok) {
      std::string valid;
      for (const auto& c : t.param_keys) valid += c + ", ";
      for (const auto& c : common_param_keys()) valid += c + ", ";
      valid.resize(valid.size() - 2);
      throw std::invalid_argument("spec '" + spec.to_string() + "': unknown parameter '" + k + "' for '" +
                                  t.name + "' (valid: " + valid + ")");
    }
  }
  // Values: the common keys, then the scheme's own (in the order the constructors parsed them, so the first
  // error reported is the one construction reported).
  common_options(spec);
  if (t.validate) t.validate(spec, role);
  return spec;
}

QuantizerPtr make_validated_quantizer(const QuantSpec& validated, Role role) {
  if (validated.is_fp()) return nullptr;
  return scheme_traits(validated.scheme).make(validated, role);
}

QuantizerPtr make_quantizer(const QuantSpec& spec, Role role) {
  return make_validated_quantizer(validate_spec(spec, role), role);
}

QuantizerPtr make_quantizer(const std::string& spec, Role role) {
  return make_quantizer(QuantSpec::parse(spec), role);
}

std::vector<int> valid_bits(const QuantSpec& spec, Role role) {
  std::vector<int> out;
  if (spec.is_fp()) return out;
  const auto& t = scheme_traits(spec.scheme);
  for (int b = t.min_bits; b <= t.max_bits; ++b) {
    QuantSpec s = spec;
    s.bits = b;
    try {
      validate_spec(s, role);  // schemes reject combinations (e.g. esb k >= bits - 1)
      out.push_back(b);
    } catch (const std::exception&) {
    }
  }
  return out;
}

StorageCost storage_cost(const QuantSpec& spec, at::IntArrayRef shape, Role role) {
  if (spec.is_fp()) {
    StorageCost c;
    c.numel = c10::multiply_integers(shape);
    c.code_bits = 32;
    return c;
  }
  const QuantSpec s = validate_spec(spec, role);
  return scheme_traits(s.scheme).storage(s, shape, role);
}

}  // namespace autoqnn::quant
