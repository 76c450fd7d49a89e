#include "search/mixed_quantizer.h"

#include <stdexcept>

#include "quantizers/registry.h"

namespace autoqnn::search {

MixedQuantizer::MixedQuantizer(quant::Role role, std::vector<quant::QuantizerPtr> candidates,
                               ArchSamplePtr sample)
    : role_(role), cands_(std::move(candidates)), sample_(std::move(sample)) {
  if (cands_.empty()) throw std::invalid_argument("MixedQuantizer: no candidate");
  if (!sample_) throw std::invalid_argument("MixedQuantizer: no architecture sample");
  for (size_t i = 0; i < cands_.size(); ++i) {
    specs_.push_back(cands_[i] ? cands_[i]->spec() : quant::QuantSpec::parse("fp32"));
    if (cands_[i]) register_module("c" + std::to_string(i), cands_[i]);
  }
}

std::shared_ptr<MixedQuantizer> MixedQuantizer::make(quant::Role role, const std::vector<quant::QuantSpec>& specs,
                                                     ArchSamplePtr sample) {
  std::vector<quant::QuantizerPtr> c;
  c.reserve(specs.size());
  // The candidates of a search space are validated specs: constructed without checking again (nullptr: fp32).
  for (const auto& s : specs) c.push_back(quant::make_validated_quantizer(s, role));
  return std::make_shared<MixedQuantizer>(role, std::move(c), std::move(sample));
}

torch::Tensor MixedQuantizer::run(int64_t i, const torch::Tensor& x) {
  ++evaluated_last;
  const auto& q = cands_[static_cast<size_t>(i)];
  return q ? q->forward(x) : x;
}

torch::Tensor MixedQuantizer::forward(const torch::Tensor& x) {
  evaluated_last = 0;
  if (calibrate_next) {
    torch::NoGradGuard ng;
    for (auto& q : cands_)
      if (q) q->calibrate(x.detach());
    calibrate_next = false;
  }
  const int64_t n = size();
  if (n == 1) return run(0, x);
  const ArchSample& s = *sample_;
  const bool weight = role_ == quant::Role::Weight;
  const int64_t idx = weight ? s.w_index : s.a_index;
  const torch::Tensor& mix = weight ? s.w_mix : s.a_mix;
  TORCH_CHECK(idx >= 0 && idx < n, "MixedQuantizer: candidate index ", idx, " out of range (", n, " candidates)");
  if (s.mode == ArchSample::Mode::Fixed || !mix.defined()) return run(idx, x);
  TORCH_CHECK(mix.numel() == n, "MixedQuantizer: ", n, " candidates but ", mix.numel(), " mixing weights");
  if (s.mode == ArchSample::Mode::Hard) {
    // Weight phase (no architecture gradient wanted): the sampled candidate alone.
    if (!mix.requires_grad()) return run(idx, x);
    // Act slot, cheap path: value = Q_idx(x) exactly (mix[idx] is exactly 1 in value); the gradient
    // reaches the architecture through mix[idx] only.
    if (!weight && !s.all_act_paths) return run(idx, x) * mix[idx].to(x.scalar_type());
    // Exact straight-through path. The mixing weights are one-hot in value, so the input (and the
    // candidates' own parameters) get their gradient from the sampled candidate alone; the others are
    // only needed for d mix_i = <grad, Q_i(x)> and are evaluated without autograd:
    //   out = Q_idx(x) + (mix - onehot) . stop_grad([Q_1(x) ... Q_n(x)])     ((mix - onehot) is 0 in value)
    auto q = run(idx, x);
    std::vector<torch::Tensor> qs;
    qs.reserve(static_cast<size_t>(n));
    {
      torch::NoGradGuard ng;
      for (int64_t i = 0; i < n; ++i) qs.push_back((i == idx ? q.detach() : run(i, x)).reshape({1, -1}));
    }
    auto delta = mix.to(x.scalar_type()) - torch::one_hot(torch::tensor(idx, mix.options().dtype(torch::kLong)), n)
                                               .to(x.scalar_type());
    return q + torch::matmul(delta.unsqueeze(0), torch::cat(qs, 0)).reshape(x.sizes());
  }
  // Soft mode, or the exact straight-through path: every candidate, mixed by one matrix product so the
  // backward is one product as well (d mix = Q . grad, d Q_i = mix_i * grad).
  std::vector<torch::Tensor> qs;
  qs.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) qs.push_back(run(i, x).reshape({1, -1}));
  auto stacked = torch::cat(qs, 0);  // [n, numel]
  return torch::matmul(mix.to(x.scalar_type()).unsqueeze(0), stacked).reshape(x.sizes());
}

std::string MixedQuantizer::describe() const {
  std::string s = "mix{";
  for (size_t i = 0; i < specs_.size(); ++i) s += (i ? "," : "") + specs_[i].to_string();
  return s + "}";
}

}  // namespace autoqnn::search
