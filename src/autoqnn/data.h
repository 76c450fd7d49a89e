// Datasets: Fashion-MNIST (gzipped or plain IDX), CIFAR-10 binary batches, and a synthetic set for tests.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace autoqnn {

// A whole split held in memory: images float32 [N, C, H, W] normalised, labels int64 [N].
struct TensorDataset {
  torch::Tensor images;
  torch::Tensor labels;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  TensorDataset slice(int64_t begin, int64_t end) const;  // [begin, end)
  TensorDataset head(int64_t n) const;                    // first min(n, size) (n <= 0: all)
};

struct DataOptions {
  std::string dataset = "fashion-mnist";  // fashion-mnist | cifar10 | synthetic
  std::string data_dir;                   // empty = the dataset's default location
  int64_t train_limit = 0;                // 0 = all
  int64_t test_limit = 0;
  bool normalize = true;                  // per-dataset mean/std (documented in docs/data.md)
  uint64_t seed = 0;                      // for the synthetic set
};

struct DatasetInfo {
  int64_t channels, height, width, num_classes;
  double mean[3], stddev[3];
};
DatasetInfo dataset_info(const std::string& dataset);  // throws listing the valid names
std::string default_data_dir(const std::string& dataset);

// Raw IDX reading (gzip detected by magic bytes). Throws std::runtime_error naming the file and the fix.
torch::Tensor read_idx_images(const std::string& path);  // uint8 [N, H, W]
torch::Tensor read_idx_labels(const std::string& path);  // int64 [N]

struct Splits {
  TensorDataset train;  // search: first 50 000 of the training set (Fashion-MNIST; CIFAR-10: 45 000)
  TensorDataset val;    // search: the rest of the training set
  TensorDataset full_train;  // the whole training set (train + val), for plain training / finetuning
  TensorDataset test;   // final evaluation only
};
// Loads train + test; train_limit / test_limit cut each split (train_limit applies to full_train and
// scales the train/val split proportionally so that val stays disjoint and deterministic).
Splits load_splits(const DataOptions& opt);

// Augmentation for training batches: random crop with zero padding and horizontal flip.
struct AugmentOptions {
  int64_t crop_padding = 0;  // 0 = off
  bool hflip = false;
};

// Deterministic mini-batch iteration (shuffle with the given generator seed per epoch).
class BatchIterator {
 public:
  BatchIterator(const TensorDataset& ds, int64_t batch_size, bool shuffle, uint64_t seed,
                AugmentOptions aug = {}, bool drop_last = false);
  int64_t num_batches() const;
  void start_epoch(int64_t epoch);                  // reshuffles deterministically from (seed, epoch)
  bool next(torch::Tensor& images, torch::Tensor& labels);  // false at the end of the epoch

 private:
  const TensorDataset& ds_;
  int64_t batch_size_;
  bool shuffle_, drop_last_;
  uint64_t seed_;
  AugmentOptions aug_;
  torch::Tensor order_;
  int64_t pos_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace autoqnn
