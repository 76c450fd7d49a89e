// The human-readable form of a policy (autoqnn policy show).
#pragma once
#include <string>

#include "autoqnn/policy.h"

namespace autoqnn::cli {

// Per-layer table + totals (+ the search provenance's method, budget, seed, version when recorded).
std::string format_policy_table(const Policy& p);

}  // namespace autoqnn::cli
