// libFuzzer target: the policy reader (autoqnn/policy_io.cpp via parse_policy) and, for a policy it
// accepts, the writer: what was read must be written and read back to the same policy.
#include <cstdint>
#include <string>

#include "autoqnn/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  autoqnn::Policy p;
  try {
    p = autoqnn::parse_policy(text, "fuzz.json");
  } catch (const std::exception&) {
    return 0;  // rejected with a message: fine
  }
  const std::string once = p.dump();
  autoqnn::Policy q = autoqnn::parse_policy(once, "fuzz-roundtrip.json");  // must not throw
  if (q.dump() != once) __builtin_trap();
  return 0;
}
