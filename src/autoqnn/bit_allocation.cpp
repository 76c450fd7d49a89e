#include "autoqnn/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace autoqnn::ptq {

std::vector<double> bit_targets(const std::vector<double>& alpha, int avg_bits) {
  double sum = 0;
  for (double a : alpha) {
    if (!(a >= 0) || !std::isfinite(a))
      throw std::invalid_argument("bit allocation: channel range " + std::to_string(a) + " is not a finite value >= 0");
    sum += std::pow(a, 2.0 / 3.0);
  }
  const double C = static_cast<double>(alpha.size());
  std::vector<double> t;
  for (double a : alpha) {
    if (a == 0 || sum == 0) {
      t.push_back(sum == 0 ? avg_bits : -std::numeric_limits<double>::infinity());
      continue;
    }
    t.push_back(std::log2(C * std::ldexp(1.0, avg_bits) * std::pow(a, 2.0 / 3.0) / sum));
  }
  return t;
}

std::vector<int> allocate_bits(const std::vector<double>& alpha, int avg_bits, int lo, int hi) {
  if (alpha.empty()) throw std::invalid_argument("bit allocation: no channels");
  if (lo > hi || avg_bits < lo || avg_bits > hi)
    throw std::invalid_argument("bit allocation: average " + std::to_string(avg_bits) + " bits outside [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  auto t = bit_targets(alpha, avg_bits);
  const int64_t C = static_cast<int64_t>(t.size());
  std::vector<int> m(t.size());
  int64_t total = 0;
  for (int64_t i = 0; i < C; ++i) {
    double r = std::isfinite(t[i]) ? std::nearbyint(t[i]) : lo;
    m[i] = static_cast<int>(std::clamp(r, double(lo), double(hi)));
    total += m[i];
  }
  const int64_t want = C * avg_bits;
  auto excess = [&](int64_t i) { return std::isfinite(t[i]) ? m[i] - t[i] : 1e9; };  // > 0: above target
  while (total != want) {
    int64_t best = -1;
    if (total > want) {  // take a bit from the channel most above its target
      for (int64_t i = 0; i < C; ++i)
        if (m[i] > lo && (best < 0 || excess(i) > excess(best))) best = i;
      --m[best];
      --total;
    } else {  // give a bit to the channel most below its target
      for (int64_t i = 0; i < C; ++i)
        if (m[i] < hi && (best < 0 || excess(i) < excess(best))) best = i;
      ++m[best];
      ++total;
    }
  }
  return m;
}

}  // namespace autoqnn::ptq
