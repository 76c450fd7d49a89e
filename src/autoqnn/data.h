// Datasets: Fashion-MNIST (gzipped or plain IDX), CIFAR-10 binary batches, and a synthetic set for tests.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

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
  double mean[3], stddev[3];  // per channel, on the [0, 1] pixel scale; normalised x = (x/255 - mean) / stddev
};
// Accepts fashion-mnist (also fmnist, fashion_mnist), cifar10 (cifar-10), synthetic; throws
// std::invalid_argument listing the valid names.
DatasetInfo dataset_info(const std::string& dataset);
// fashion-mnist: /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist);
// cifar10: /usr/share/datasets/cifar-10-batches-bin; synthetic: "" (generated in memory).
std::string default_data_dir(const std::string& dataset);

// Raw IDX reading (gzip detected by magic bytes 1f 8b, else plain). Validates the magic number
// (0x00000803 images / 0x00000801 labels), the dimensions against the file length and (labels) the range
// 0..num_classes-1. Throws std::runtime_error naming the file and the fix.
torch::Tensor read_idx_images(const std::string& path);                            // uint8 [N, H, W]
torch::Tensor read_idx_labels(const std::string& path, int64_t num_classes = 10);  // int64 [N]
// CIFAR-10 binary batches (1 label byte + 3072 pixel bytes per record), concatenated in order; stops after
// `limit` records when limit > 0. Images float32 [N, 3, 32, 32] on [0, 1] or normalised.
TensorDataset read_cifar10(const std::vector<std::string>& paths, bool normalize = true, int64_t limit = 0);

struct Splits {
  TensorDataset train;  // search: first 50 000 of the training set (Fashion-MNIST; CIFAR-10: 45 000)
  TensorDataset val;    // search: the rest of the training set
  TensorDataset full_train;  // the whole training set (train + val), for plain training / finetuning
  TensorDataset test;   // final evaluation only
};
// Loads train + test; train_limit / test_limit cut each split (train_limit applies to full_train and
// scales the train/val split proportionally so that val stays disjoint and deterministic):
// full_train = the first train_limit training images; val = its last 1/6 (CIFAR-10: 1/10), train = the rest.
// train / val / full_train share storage (views). Synthetic: 6000 train (5000 / 1000) + 1000 test,
// deterministic from opt.seed; a limited set is a prefix of the full one.
Splits load_splits(const DataOptions& opt);

// Augmentation for training batches: random crop with zero padding and horizontal flip.
// Padding is 0 of the (normalised) tensor, i.e. the dataset mean colour. Draws are deterministic from
// (seed, epoch, batch index).
struct AugmentOptions {
  int64_t crop_padding = 0;  // 0 = off
  bool hflip = false;
};

// Deterministic mini-batch iteration: the order of epoch e is a Fisher-Yates shuffle driven by
// std::mt19937_64(seed * 1000003 + e) (our own unbiased bounded draw, so identical across LibTorch
// versions and standard libraries). The iterator keeps a reference: `ds` must outlive it.
// Construction prepares epoch 0; batches are index_select copies (never views of the dataset).
class BatchIterator {
 public:
  BatchIterator(const TensorDataset& ds, int64_t batch_size, bool shuffle, uint64_t seed,
                AugmentOptions aug = {}, bool drop_last = false);
  int64_t num_batches() const;
  void start_epoch(int64_t epoch);                  // reshuffles deterministically from (seed, epoch)
  bool next(torch::Tensor& images, torch::Tensor& labels);  // false at the end of the epoch
  int64_t epoch() const { return epoch_; }
  // Data-parallel sampler: every rank walks the same shuffled global batches of `batch_size` and next()
  // returns rank `rank`'s slice of each (dist::shard_range); a final batch smaller than `world` is
  // dropped (every rank needs a sample). world 1 = the whole batch.
  void set_shard(int rank, int world);
  int64_t global_batch_size() const { return global_b_; }  // of the batch next() returned last

 private:
  int64_t usable_size() const;  // ds.size() without a final batch smaller than the world

 private:
  torch::Tensor augment(const torch::Tensor& x, int64_t batch_index) const;

  const TensorDataset& ds_;
  int64_t batch_size_;
  bool shuffle_, drop_last_;
  uint64_t seed_;
  AugmentOptions aug_;
  torch::Tensor order_;
  int64_t pos_ = 0;
  int64_t epoch_ = 0;
  uint64_t aug_state_ = 0;
  int shard_rank_ = 0, shard_world_ = 1;
  int64_t global_b_ = 0;
};

}  // namespace autoqnn
