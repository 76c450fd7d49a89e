// libFuzzer target: quantizer spec strings (quantizers/spec.cpp) through parse, validate (both roles), the
// common keys, the axis check and the storage cost of a conv weight.
#include <cstdint>
#include <string>

#include "quantizers/quantizer.h"
#include "quantizers/registry.h"
#include "quantizers/spec.h"

using namespace autoqnn::quant;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  QuantSpec s;
  try {
    s = QuantSpec::parse(text);
  } catch (const std::exception&) {
    return 0;
  }
  try {
    QuantSpec::parse(s.to_string());  // what to_string writes is parsed again (must not crash)
  } catch (const std::exception&) {
  }
  for (Role role : {Role::Weight, Role::Activation}) {
    try {
      QuantSpec v = validate_spec(s, role);
      common_options(v);
      if (!v.is_fp()) {
        check_axis(v, 4);
        storage_cost(v, {8, 4, 3, 3});
      }
    } catch (const std::exception&) {
    }
  }
  return 0;
}
