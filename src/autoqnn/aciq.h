// ACIQ: analytical clipping for integer quantization (Banner, Nahshan, Soudry; NeurIPS 2019).
//
// For an M-bit uniform quantizer clipped at [-alpha, alpha] of a Laplace(0, b) / Normal(0, sigma) variable
// the expected MSE is (clip noise + rounding noise, rounding noise = Delta^2 / 12 with Delta = 2 alpha / 2^M):
//   Laplace:  E(alpha) = 2 b^2 exp(-alpha / b) + alpha^2 / (3 * 4^M)
//   Gauss:    E(alpha) = (alpha^2 + sigma^2) (1 - erf(alpha / (sqrt2 sigma)))
//                        - sqrt(2/pi) alpha sigma exp(-alpha^2 / (2 sigma^2)) + alpha^2 / (3 * 4^M)
// alpha* / b (resp. / sigma) depends on M only; aciq_solve minimises E numerically (golden section), the
// published table (aciq_published) is what tests compare against. After a ReLU (one-sided data, an
// unsigned quantizer of M bits has the resolution of a signed one of M + 1 bits) the entry for M + 1 is
// used. docs/ptq.md.
#pragma once
#include <string>

#include "autoqnn/act_stats.h"

namespace autoqnn::ptq {

enum class Prior { Laplace, Gauss };
Prior parse_prior(const std::string& s);  // "laplace" | "gauss"; throws listing them
const char* prior_name(Prior p);

// Expected MSE at clip alpha for a unit-scale prior (b = 1 / sigma = 1) and M bits.
double aciq_mse(Prior p, double alpha, int bits);
// argmin_alpha aciq_mse (unit scale), bits in [1, 16]. Cached.
double aciq_solve(Prior p, int bits);
// The table of the paper / reference note, bits in [1, 8].
double aciq_published(Prior p, int bits);

// The clip for data with statistics `s` quantized at `bits` by a uniform quantizer. one_sided: all data
// >= 0 (after a ReLU) and an unsigned (asym) quantizer: the M + 1 entry, scale b = E|x| / sigma =
// sqrt(E x^2) (the symmetric extension around 0); otherwise b = E|x - E x| / sigma = std. The clip never
// exceeds the observed range: min(alpha, max|x - centre|).
double aciq_clip(Prior p, const ChannelStats& s, int bits, bool one_sided);

}  // namespace autoqnn::ptq
