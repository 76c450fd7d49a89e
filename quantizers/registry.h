// The scheme table (ggml type-traits style: one row of facts per scheme) and the spec -> object factory
// (FAISS style): make_quantizer(QuantSpec::parse("esb:4:k=1"), Role::Weight).
//
// A spec on its way to a layer: QuantSpec::parse (syntax) -> validate_spec (the row's facts, the common keys
// and the row's validate: every check a constructor could make) -> the row's make (construction only).
// validate_spec, valid_bits and storage_cost answer from the row and never build a quantizer; make_quantizer
// validates once and constructs once. Adding a scheme: docs/quantizers.md, "Adding a scheme".
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
  // The three functions of the scheme (defined in its .cpp). Each takes a spec that passed the checks above
  // (scheme name canonical, bits filled in and in range, keys known, role allowed) and the common keys.
  //   make:     constructs the quantizer; the spec must also have passed validate (make does not re-check).
  //   validate: the scheme's own checks of parameter values and combinations (e.g. esb k <= bits - 2);
  //             throws std::invalid_argument with the message users see. nullptr: nothing to check.
  //   storage:  the accounted storage of a tensor of `shape`; equals make(spec, role)->storage(shape).
  QuantizerPtr (*make)(const QuantSpec&, Role);
  void (*validate)(const QuantSpec&, Role);
  StorageCost (*storage)(const QuantSpec&, at::IntArrayRef, Role);
};

// Keys every scheme accepts: grad=ste|pwl|pwl_c, r=<0..1>, per_channel, axis=<int>, momentum=<0..1>.
const std::vector<std::string>& common_param_keys();

const std::vector<SchemeTraits>& scheme_table();
// Throws std::invalid_argument listing the valid scheme names.
const SchemeTraits& scheme_traits(const std::string& name);
// Checks scheme, bits, params and role, the common keys' values and the scheme's own parameter checks (the
// row's validate); fills default bits and the canonical scheme name. Throws std::invalid_argument with a
// message naming what is wrong (listing what is valid). A spec that passes constructs without error.
QuantSpec validate_spec(QuantSpec spec, Role role);
// validate_spec + construct (validated once). "fp32" is not a quantizer: returns nullptr.
QuantizerPtr make_quantizer(const QuantSpec& spec, Role role);
QuantizerPtr make_quantizer(const std::string& spec, Role role);
// Construct from a spec that validate_spec returned, without validating it again (nullptr for fp32).
QuantizerPtr make_validated_quantizer(const QuantSpec& validated, Role role);
// Valid bitwidths of the scheme of `spec` (its other parameters taken into account, e.g. esb k).
std::vector<int> valid_bits(const QuantSpec& spec, Role role = Role::Weight);
// Storage bytes of a weight of `shape` quantized by `spec` (fp32 -> 4 bytes/element); throws as validate_spec.
StorageCost storage_cost(const QuantSpec& spec, at::IntArrayRef shape, Role role = Role::Weight);

}  // namespace autoqnn::quant
