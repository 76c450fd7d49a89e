// Training and evaluation loops shared by train, finetune, search warm-up and AdaBits.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"

namespace autoqnn {

struct EvalResult {
  double top1 = 0;  // fraction in [0, 1]
  double loss = 0;  // mean cross-entropy
  int64_t n = 0;
};
EvalResult evaluate(torch::nn::Module& model, const std::function<torch::Tensor(const torch::Tensor&)>& fwd,
                    const TensorDataset& data, int64_t batch_size, torch::Device device);
EvalResult evaluate(Model& model, const TensorDataset& data, int64_t batch_size, torch::Device device);
// Data-parallel runs (distributed.h): each rank evaluates its contiguous shard and the sums are reduced,
// so every rank gets the whole set's result; the plain evaluate otherwise. Every rank must call it.
EvalResult evaluate_sharded(torch::nn::Module& model, const std::function<torch::Tensor(const torch::Tensor&)>& fwd,
                            const TensorDataset& data, int64_t batch_size, torch::Device device);
EvalResult evaluate_sharded(Model& model, const TensorDataset& data, int64_t batch_size, torch::Device device);

struct TrainOptions {
  int epochs = 1;
  int64_t batch_size = 128;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;   // applied to tensors with dim > 1 (conv/linear weights) only
  bool nesterov = true;
  std::string schedule = "cosine";  // cosine | step | constant
  std::vector<int> milestones;      // step schedule: epochs where lr *= gamma
  double gamma = 0.1;
  int warmup_epochs = 0;            // linear lr warm-up
  AugmentOptions augment;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  std::string label = "train";      // progress-bar label
  double quant_lr_scale = 1.0;      // lr multiplier for quantizer parameters (names containing "wq."/"aq.")
  // Optional: replaces `loss = CE(model(x), y)` of a training step (AdaBits: the loss summed over the
  // bitwidths, adabits.h). Returns the loss to minimise and sets `logits` (for the running accuracy).
  std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& y, torch::Tensor& logits)> step_loss;
};

struct EpochStats {
  int epoch;           // 1-based
  double train_loss, train_top1, lr, seconds, images_per_s;
  EvalResult val;      // n == 0 when no validation set
};

// Runs epochs [start_epoch, opt.epochs). Data-parallel when distributed.h's context is active: opt.batch_size
// is the global batch, each rank trains on its slice with synchronised BatchNorm and averaged gradients
// (the replicas stay identical; the stats are of the global batch). `on_epoch_end(epoch, optimizer)` is called after each epoch
// (checkpointing). `resume_from` (optional) restores the optimizer state before the first epoch.
std::vector<EpochStats> train_model(
    Model& model, const TensorDataset& train, const TensorDataset* val, const TrainOptions& opt,
    int start_epoch = 0,
    const std::function<void(int epoch, const EpochStats&, torch::optim::Optimizer&)>& on_epoch_end = {},
    const std::function<void(torch::optim::Optimizer&)>& before_first_epoch = {});

double schedule_lr(const TrainOptions& opt, int epoch, double frac_in_epoch);

}  // namespace autoqnn
