// Adam for the architecture parameters, with its moment estimates and step count held as module
// buffers: they live in the search-state file next to theta (one atomic file, exact resume), with no
// dependence on LibTorch's optimizer serialisation format (which differs between 1.13 and 2.x).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <vector>

namespace autoqnn::search {

struct ArchAdamOptions {
  double lr = 0.01;
  double beta1 = 0.5, beta2 = 0.999;  // beta1 = 0.5 as in DARTS: the architecture gradient is noisy
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 towards theta = 0 (uniform)
  nlohmann::json to_json() const;
};

class ArchAdam : public torch::nn::Module {
 public:
  ArchAdam(std::vector<torch::Tensor> params, ArchAdamOptions opt);
  void zero_grad();
  void step();  // parameters without a gradient are skipped (and their moments left as they are)
  int64_t steps() const;
  ArchAdamOptions& options() { return opt_; }

 private:
  std::vector<torch::Tensor> params_, m_, v_;
  torch::Tensor step_;  // int64 scalar buffer
  ArchAdamOptions opt_;
};

}  // namespace autoqnn::search
