#include "search/learned_bit_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace autoqnn::search {

namespace {
constexpr double kEdge = 0.01;  // init / set_bits keep sigmoid(s) in [kEdge, 1 - kEdge]
}

LearnedBitQuantizer::LearnedBitQuantizer(quant::QuantizerPtr q, std::vector<int> bits, double init_bits)
    : q_(std::move(q)), bits_(std::move(bits)) {
  if (!q_) throw std::invalid_argument("LearnedBitQuantizer: no scheme quantizer");
  if (bits_.empty()) throw std::invalid_argument("LearnedBitQuantizer: no valid bitwidth for " + q_->describe());
  for (size_t i = 1; i < bits_.size(); ++i)
    if (bits_[i] <= bits_[i - 1])
      throw std::invalid_argument("LearnedBitQuantizer: bitwidths must be strictly increasing");
  register_module("q", q_);
  if (learned()) {
    s_ = register_parameter("bit_logit", torch::zeros({}, torch::kFloat32));
    set_bits(init_bits);
  }
}

void LearnedBitQuantizer::set_bits(double b) {
  if (!learned()) return;
  if (!std::isfinite(b)) throw std::invalid_argument("LearnedBitQuantizer: bitwidth must be finite");
  const double lo = bits_.front(), hi = bits_.back();
  double u = std::clamp((b - lo) / (hi - lo), kEdge, 1.0 - kEdge);
  torch::NoGradGuard ng;
  s_.fill_(std::log(u / (1.0 - u)));
}

torch::Tensor LearnedBitQuantizer::bits_tensor(bool grad) const {
  if (!learned()) return torch::full({}, static_cast<double>(bits_.front()), torch::kFloat64);
  const double lo = bits_.front(), hi = bits_.back();
  torch::Tensor s = grad ? s_ : s_.detach();
  return lo + (hi - lo) * torch::sigmoid(s.to(torch::kFloat64));
}

double LearnedBitQuantizer::bits_value() const {
  torch::NoGradGuard ng;
  return bits_tensor(false).item<double>();
}

namespace {
// Segment i (v_i <= b <= v_{i+1}) of b among the options; 0 for a single option.
int64_t segment_of(const std::vector<int>& v, double b) {
  int64_t i = 0;
  while (i + 2 < static_cast<int64_t>(v.size()) && b >= v[static_cast<size_t>(i + 1)]) ++i;
  return i;
}
}  // namespace

torch::Tensor LearnedBitQuantizer::interp_weights(bool grad) const {
  const int64_t n = size();
  auto opt = torch::dtype(torch::kFloat64).device(learned() ? s_.device() : torch::Device(torch::kCPU));
  if (!learned()) return torch::ones({1}, opt);
  torch::Tensor b = bits_tensor(grad);
  const int64_t i = segment_of(bits_, b.item<double>());
  const double vi = bits_[static_cast<size_t>(i)], vj = bits_[static_cast<size_t>(i + 1)];
  torch::Tensor f = (b - vi) / (vj - vi);
  auto ei = torch::zeros({n}, opt), ej = torch::zeros({n}, opt);
  ei[i] = 1.0;
  ej[i + 1] = 1.0;
  return ei * (1.0 - f) + ej * f;
}

int64_t LearnedBitQuantizer::nearest() const {
  if (!learned()) return 0;
  const double b = bits_value();
  int64_t best = 0;
  for (int64_t k = 1; k < size(); ++k)
    if (std::abs(b - bits_[static_cast<size_t>(k)]) < std::abs(b - bits_[static_cast<size_t>(best)])) best = k;
  return best;
}

void LearnedBitQuantizer::set_continuous(bool bit_grad) {
  fixed_ = -1;
  bit_grad_ = bit_grad;
}

void LearnedBitQuantizer::set_fixed(int64_t option) {
  TORCH_CHECK(option >= 0 && option < size(), "LearnedBitQuantizer::set_fixed: option ", option, " out of range (",
              size(), " options)");
  fixed_ = option;
}

torch::Tensor LearnedBitQuantizer::forward(const torch::Tensor& x) {
  if (calibrate_next) {
    torch::NoGradGuard ng;
    q_->calibrate(x.detach());
    calibrate_next = false;
  }
  if (fixed()) return q_->quantize(x, bits_[static_cast<size_t>(std::max<int64_t>(fixed_, 0))]);
  torch::Tensor b = bits_tensor(bit_grad_);
  const int64_t i = segment_of(bits_, b.item<double>());
  const int vi = bits_[static_cast<size_t>(i)], vj = bits_[static_cast<size_t>(i + 1)];
  torch::Tensor f = ((b - vi) / static_cast<double>(vj - vi)).to(x.scalar_type());
  torch::Tensor lo = q_->quantize(x, vi);
  torch::Tensor hi = q_->quantize(x, vj);
  return lo + f * (hi - lo);
}

std::string LearnedBitQuantizer::describe() const {
  std::string scheme = q_->spec().scheme;
  if (!learned()) return q_->spec().to_string();
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s:b=%.3f[%d..%d]", scheme.c_str(), bits_value(), bits_.front(), bits_.back());
  return buf;
}

}  // namespace autoqnn::search
