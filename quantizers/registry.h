// The scheme table (ggml type-traits style: one row of facts per scheme) and the spec -> object factory
// (FAISS style): make_quantizer(QuantSpec::parse("esb:4:k=1"), Role::Weight).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "quantizers/quantizer.h"

namespace autoqnn::quant {

struct SchemeTraits {
  const char* name;          // spec name, e.g. "esb"
  int min_bits, max_bits;    // valid bitwidths (inclusive); fixed-bit schemes have min == max
  int default_bits;          // used when the spec omits bits
  bool is_signed;            // weight codes carry a sign
  bool weight_ok, act_ok;    // usable as a weight / activation quantizer
  const char* params;        // accepted parameters, "key=default: meaning; ..." (shown by `autoqnn quantizers`)
  const char* summary;       // one line
  std::vector<std::string> param_keys;  // scheme-specific keys accepted (common ones are always accepted)
  std::function<QuantizerPtr(const QuantSpec&, Role)> make;
};

// Keys every scheme accepts: grad=ste|pwl|pwl_c, r=<0..1>, per_channel, axis=<int>, momentum=<0..1>.
const std::vector<std::string>& common_param_keys();

const std::vector<SchemeTraits>& scheme_table();
// Throws std::invalid_argument listing the valid scheme names.
const SchemeTraits& scheme_traits(const std::string& name);
// Checks scheme, bits, params and role; fills default bits. Throws with a message listing what is valid.
QuantSpec validate_spec(QuantSpec spec, Role role);
// validate_spec + construct. "fp32" is not a quantizer: returns nullptr.
QuantizerPtr make_quantizer(const QuantSpec& spec, Role role);
QuantizerPtr make_quantizer(const std::string& spec, Role role);
// Valid bitwidths of the scheme of `spec` (its other parameters taken into account, e.g. esb k).
std::vector<int> valid_bits(const QuantSpec& spec, Role role = Role::Weight);
// Storage bytes of a weight of `shape` quantized by `spec` (fp32 -> 4 bytes/element).
StorageCost storage_cost(const QuantSpec& spec, at::IntArrayRef shape, Role role = Role::Weight);

}  // namespace autoqnn::quant
