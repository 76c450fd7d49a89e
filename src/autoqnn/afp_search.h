// Choosing AFP's exponent / mantissa split (Liu et al., ICCV 2021; autoqnn afp, docs/ptq.md).
// For N total bits (1 sign + E exponent + M mantissa), E in [1, N - 1]:
//   objective(E) = D(|W|, |Q_E(W)|) * H(E, M)
//   D = symmetric KL between the two empirical CDFs of |W| and |Q_E(W)|, each evaluated at K = 256
//       evenly spaced points t_k = k max|W| / K (k = 1..K), normalised to sum 1 with eps = 1e-10 added:
//       D = sum_k (p_k - q_k) log(p_k / q_k)
//   H = 2^E + M + E + ([E > 0] + M)^2           (the hardware-cost penalty of the paper's code)
// Q_E is the `afp:N:e=E` quantizer (per tensor). Per model: D is the parameter-weighted mean over layers
// (one E for every layer); per layer: each layer on its own. Search: exhaustive, or simulated annealing
// (T0 = 100, T <- 0.8 T, neighbour E +- 1, Metropolis acceptance, stop after 5 consecutive rejections;
// the best visited E wins; seeded).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace autoqnn::ptq {

// CDF-based symmetric KL between |w| and |q| (shapes equal).
double afp_distance(const torch::Tensor& w, const torch::Tensor& q);
// Distance of w to its AFP quantization with E exponent bits at `bits` total.
double afp_distance_at(const torch::Tensor& w, int bits, int E);
double afp_hw_cost(int E, int M);

struct AfpEval {
  int E = 0, M = 0;
  double distance = 0, cost = 0, objective = 0;
};
struct AfpSearchResult {
  AfpEval best;
  std::vector<AfpEval> visited;  // in visiting order (anneal) or E order (exhaustive)
};
// `distance(E)` for E in [1, bits - 1].
AfpSearchResult afp_exhaustive(int bits, const std::function<double(int)>& distance);
AfpSearchResult afp_anneal(int bits, const std::function<double(int)>& distance, uint64_t seed);

}  // namespace autoqnn::ptq
