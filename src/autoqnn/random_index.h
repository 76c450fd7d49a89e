#pragma once
// Unbiased integer in [0, n) from std::mt19937_64 (rejection sampling): the same sequence on every standard
// library (std::uniform_int_distribution's algorithm is implementation-defined). Used by the data sets'
// shuffles and splits so a --seed means the same images everywhere.
#include <cstdint>
#include <random>

namespace autoqnn {

inline uint64_t bounded_index(std::mt19937_64& g, uint64_t n) {
  if (n <= 1) return 0;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = g();
  while (r >= limit);
  return r % n;
}

}  // namespace autoqnn
