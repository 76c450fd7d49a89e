// Switchable BatchNorm (AdaBits): a BatchNorm2d that can hold one private BatchNorm per bitwidth.
//
// Until make_switchable() is called it IS a torch::nn::BatchNorm2d (same parameters and buffers under the
// same names, same forward), so FP32 checkpoints load unchanged and code that looks for BatchNorm2dImpl finds
// it. make_switchable({8, 6, 5, 4}) adds child BatchNorms "b8", "b6", ... initialised as copies of the base
// state; select(b) makes forward() use the one of bitwidth b, select(0) the base BatchNorm.
#pragma once
#include <torch/torch.h>

#include <vector>

#include <ostream>

// Debian's LibTorch 1.13 does not export BatchNormImplBase<2, BatchNorm2dImpl>::pretty_print, which the
// (construction) vtables of a class derived from BatchNorm2dImpl reference: define it here (inline, the same
// text as LibTorch's), so the derived class links with 1.13 and 2.x alike.
template <>
inline void torch::nn::BatchNormImplBase<2, torch::nn::BatchNorm2dImpl>::pretty_print(std::ostream& stream) const {
  stream << std::boolalpha << "torch::nn::BatchNorm2d(" << this->options.num_features() << ", "
         << "eps=" << this->options.eps() << ", "
         << "momentum=" << this->options.momentum().value_or(0.1) << ", "
         << "affine=" << this->options.affine() << ", "
         << "track_running_stats=" << this->options.track_running_stats() << ")";
}

namespace autoqnn {

class SwitchableBatchNorm2dImpl : public torch::nn::BatchNorm2dImpl {
 public:
  explicit SwitchableBatchNorm2dImpl(int64_t num_features) : torch::nn::BatchNorm2dImpl(num_features) {}
  // The base BatchNorm, or the per-bit one selected (shadows BatchNorm2dImpl::forward; models call it
  // through the SwitchableBatchNorm2d holder).
  torch::Tensor forward(const torch::Tensor& x);

  // Adds one BatchNorm per bitwidth (copies of the base parameters and running statistics). Throws for an
  // empty or repeated list, a bitwidth <= 0, or when the module is already switchable with another list.
  void make_switchable(const std::vector<int>& bits);
  bool is_switchable() const { return !bits_.empty(); }
  const std::vector<int>& bits_list() const { return bits_; }
  // 0 = the base BatchNorm; otherwise a bitwidth of the list (std::invalid_argument naming the valid ones).
  void select(int bits);
  int selected() const { return active_; }
  // The per-bit BatchNorm of `bits` (std::invalid_argument when not in the list).
  torch::nn::BatchNorm2d& at_bits(int bits);
  // Data-parallel runs: in training, normalise with the statistics of the global batch (summed over the
  // ranks, distributed.h) so that W ranks compute what one process does on the whole batch.
  void set_sync(bool on) { sync_ = on; }
  bool sync() const { return sync_; }

 private:
  std::vector<int> bits_;
  std::vector<torch::nn::BatchNorm2d> per_bit_;
  int active_ = 0;
  bool sync_ = false;
};
TORCH_MODULE(SwitchableBatchNorm2d);

// Sets set_sync(on) on every SwitchableBatchNorm2d of `m`; returns how many.
int set_sync_batchnorm(torch::nn::Module& m, bool on);

}  // namespace autoqnn
