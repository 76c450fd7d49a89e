#include "autoqnn/afp_search.h"

#include <cmath>
#include <map>
#include <random>
#include <stdexcept>

#include "quantizers/registry.h"

namespace autoqnn::ptq {

double afp_distance(const torch::Tensor& w, const torch::Tensor& q) {
  torch::NoGradGuard ng;
  TORCH_CHECK(w.sizes() == q.sizes(), "afp_distance: shapes differ");
  auto a = std::get<0>(w.detach().abs().flatten().to(torch::kCPU, torch::kFloat64).sort());
  auto b = std::get<0>(q.detach().abs().flatten().to(torch::kCPU, torch::kFloat64).sort());
  const int64_t n = a.numel();
  if (n == 0) return 0;
  const double mx = a[n - 1].item<double>();
  if (!(mx > 0)) return 0;
  const int K = 256;
  auto t = torch::arange(1, K + 1, torch::kFloat64) * (mx / K);
  // empirical CDF: count of values <= t
  auto Fa = torch::searchsorted(a, t, /*out_int32=*/false, /*right=*/true).to(torch::kFloat64) / n;
  auto Fb = torch::searchsorted(b, t, false, true).to(torch::kFloat64) / n;
  const double eps = 1e-10;
  auto p = (Fa + eps) / (Fa + eps).sum(), r = (Fb + eps) / (Fb + eps).sum();
  return ((p - r) * (p / r).log()).sum().item<double>();
}

double afp_distance_at(const torch::Tensor& w, int bits, int E) {
  auto q = quant::make_quantizer("afp:" + std::to_string(bits) + ":e=" + std::to_string(E), quant::Role::Weight);
  q->eval();
  torch::NoGradGuard ng;
  return afp_distance(w, q->forward(w.detach()));
}

double afp_hw_cost(int E, int M) { return std::ldexp(1.0, E) + M + E + std::pow((E > 0 ? 1 : 0) + M, 2); }

namespace {
AfpEval eval_at(int bits, int E, const std::function<double(int)>& distance, std::map<int, AfpEval>& memo) {
  auto it = memo.find(E);
  if (it != memo.end()) return it->second;
  AfpEval e;
  e.E = E;
  e.M = bits - 1 - E;
  e.distance = distance(E);
  e.cost = afp_hw_cost(e.E, e.M);
  e.objective = e.distance * e.cost;
  memo[E] = e;
  return e;
}
void check_bits(int bits) {
  if (bits < 2 || bits > 16) throw std::invalid_argument("afp: --bits " + std::to_string(bits) + " out of range [2, 16]");
}
}  // namespace

AfpSearchResult afp_exhaustive(int bits, const std::function<double(int)>& distance) {
  check_bits(bits);
  std::map<int, AfpEval> memo;
  AfpSearchResult r;
  for (int E = 1; E <= bits - 1; ++E) {
    auto e = eval_at(bits, E, distance, memo);
    r.visited.push_back(e);
    if (r.visited.size() == 1 || e.objective < r.best.objective) r.best = e;
  }
  return r;
}

AfpSearchResult afp_anneal(int bits, const std::function<double(int)>& distance, uint64_t seed) {
  check_bits(bits);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  std::map<int, AfpEval> memo;
  AfpSearchResult r;
  const int Emax = bits - 1;
  int E = 1 + static_cast<int>(rng() % static_cast<uint64_t>(Emax));
  AfpEval cur = eval_at(bits, E, distance, memo);
  r.visited.push_back(cur);
  r.best = cur;
  int rejections = 0;
  for (double T = 100.0; rejections < 5 && T > 1e-12 && Emax > 1; T *= 0.8) {
    int nE = cur.E + (U(rng) < 0.5 ? -1 : 1);
    if (nE < 1) nE = 2;
    if (nE > Emax) nE = Emax - 1;
    AfpEval nxt = eval_at(bits, nE, distance, memo);
    r.visited.push_back(nxt);
    const double delta = nxt.objective - cur.objective;
    if (delta <= 0 || U(rng) < std::exp(-delta / T)) {
      cur = nxt;
      rejections = 0;
    } else {
      ++rejections;
    }
    if (cur.objective < r.best.objective) r.best = cur;
    if (nxt.objective < r.best.objective) r.best = nxt;
  }
  return r;
}

}  // namespace autoqnn::ptq
