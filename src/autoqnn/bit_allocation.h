// Per-channel bit allocation at a fixed average (Banner et al. 2019, section 4): channel i of range
// alpha_i gets bins_i = C 2^M alpha_i^(2/3) / sum_j alpha_j^(2/3) quantization bins (minimising the total
// rounding MSE sum alpha_i^2 / bins_i^2 under sum bins_i = C 2^M), i.e. M_i = round(log2 bins_i), clamped
// to [lo, hi]. A correction loop then moves single bits (from the channel most above its real-valued
// target, or to the one most below) until mean(M_i) = M exactly. docs/ptq.md.
#pragma once
#include <vector>

namespace autoqnn::ptq {

// Real-valued targets log2(bins_i) (-inf for alpha_i = 0).
std::vector<double> bit_targets(const std::vector<double>& alpha, int avg_bits);
// Integer bits with sum = C * avg_bits (requires lo <= avg_bits <= hi; throws otherwise, or for
// negative / non-finite alpha). Deterministic (ties: lower channel index first).
std::vector<int> allocate_bits(const std::vector<double>& alpha, int avg_bits, int lo, int hi);

}  // namespace autoqnn::ptq
