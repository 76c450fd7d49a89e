#include "autoqnn/aciq.h"

#include <array>
#include <cmath>
#include <mutex>
#include <stdexcept>

namespace autoqnn::ptq {

Prior parse_prior(const std::string& s) {
  if (s == "laplace") return Prior::Laplace;
  if (s == "gauss" || s == "gaussian") return Prior::Gauss;
  throw std::invalid_argument("unknown ACIQ prior '" + s + "' (valid: laplace, gauss)");
}

const char* prior_name(Prior p) { return p == Prior::Laplace ? "laplace" : "gauss"; }

double aciq_mse(Prior p, double a, int bits) {
  const double rounding = a * a / (3.0 * std::pow(4.0, bits));
  if (p == Prior::Laplace) return 2.0 * std::exp(-a) + rounding;
  return (a * a + 1.0) * std::erfc(a / std::sqrt(2.0)) - std::sqrt(2.0 / M_PI) * a * std::exp(-a * a / 2.0) +
         rounding;
}

double aciq_solve(Prior p, int bits) {
  if (bits < 1 || bits > 16) throw std::out_of_range("ACIQ: bits " + std::to_string(bits) + " out of range [1, 16]");
  static std::mutex mu;
  static std::array<std::array<double, 17>, 2> cache{};
  std::lock_guard<std::mutex> lock(mu);
  double& slot = cache[p == Prior::Laplace ? 0 : 1][bits];
  if (slot > 0) return slot;
  // E(alpha) is unimodal on (0, 40]: golden-section search to ~1e-12.
  double lo = 1e-6, hi = 40.0;
  const double g = (std::sqrt(5.0) - 1.0) / 2.0;
  double c = hi - g * (hi - lo), d = lo + g * (hi - lo);
  double fc = aciq_mse(p, c, bits), fd = aciq_mse(p, d, bits);
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    if (fc < fd) {
      hi = d, d = c, fd = fc;
      c = hi - g * (hi - lo), fc = aciq_mse(p, c, bits);
    } else {
      lo = c, c = d, fc = fd;
      d = lo + g * (hi - lo), fd = aciq_mse(p, d, bits);
    }
  }
  slot = 0.5 * (lo + hi);
  return slot;
}

double aciq_published(Prior p, int bits) {
  static const double lap[] = {1.86, 2.83, 3.89, 5.03, 6.20, 7.41, 8.64, 9.89};
  static const double gau[] = {1.24, 1.71, 2.15, 2.55, 2.93, 3.28, 3.61, 3.92};
  if (bits < 1 || bits > 8) throw std::out_of_range("ACIQ published table: bits " + std::to_string(bits) + " not in [1, 8]");
  return (p == Prior::Laplace ? lap : gau)[bits - 1];
}

double aciq_clip(Prior p, const ChannelStats& s, int bits, bool one_sided) {
  const int m = one_sided ? bits + 1 : bits;
  double scale, centre;
  if (one_sided) {
    scale = p == Prior::Laplace ? s.mean_abs : std::sqrt(std::max(s.mean_sq, 0.0));
    centre = 0;
  } else {
    scale = p == Prior::Laplace ? s.mad : s.std();
    centre = s.mean;
  }
  const double range = std::max(std::fabs(s.max - centre), std::fabs(s.min - centre));
  if (!(scale > 0)) return range;
  return std::min(aciq_solve(p, std::min(m, 16)) * scale, range);
}

}  // namespace autoqnn::ptq
