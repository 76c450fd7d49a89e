// Statistics of every quantizable layer's input activation over calibration batches (ACIQ clipping and
// per-channel bit allocation of activations, docs/ptq.md). Two passes over the same batches: moments,
// min/max first, then the mean absolute deviation around the mean.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"

namespace autoqnn::ptq {

struct ChannelStats {
  int64_t n = 0;
  double mean = 0, mean_abs = 0, mean_sq = 0;  // E x, E|x|, E x^2
  double mad = 0;                              // E|x - E x|
  double min = 0, max = 0;
  double std() const;                          // sqrt(max(E x^2 - (E x)^2, 0))
};

struct LayerActStats {
  ChannelStats all;                    // the whole tensor
  std::vector<ChannelStats> channels;  // per input channel (dim 1 of the input)
  torch::Tensor input;                 // the first batch's first StatsOptions::keep_inputs rows (or undefined)
  bool one_sided() const { return all.min >= 0; }
};

struct StatsOptions {
  int64_t batches = 8;
  int64_t batch_size = 128;
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;
  int64_t keep_inputs = 0;  // > 0: keep that many rows of every layer's first input (the ACIQ guard's probe)
};

// Runs `opt.batches` shuffled mini-batches of `data` through the model in eval mode without gradient and
// records every quant layer's input (before its act quantizer, which is left in place). Throws when
// data is empty or batches < 1.
std::map<std::string, LayerActStats> collect_act_stats(Model& model, const TensorDataset& data,
                                                       const StatsOptions& opt);

// Whether each quant layer's input is never negative (after a ReLU) on `batches` shuffled batches of
// `data`: layer name -> true when min >= 0. Chooses activation families: PACT's range is [0, alpha], a
// signed (symmetric) quantizer spends half its levels on a one-sided input.
std::map<std::string, bool> inputs_one_sided(Model& model, const TensorDataset& data, uint64_t seed, int64_t batches = 2);

}  // namespace autoqnn::ptq
