// Data-parallel training on torch's c10d (docs/distributed.md): one process per rank, a TCPStore hosted by
// rank 0, a ProcessGroupGloo on CPU (ProcessGroupNCCL when LibTorch has it and the device is CUDA).
//
// The context is process-wide, like torch.distributed's default group: `init` once per process (the CLI
// does it from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT or --rank ...); with world size 1 nothing is
// created and every call below is a no-op, so single-process runs pay nothing.
//
// Contract of the loops that use it (trainer.cpp, search_driver.cpp): every rank runs the same code on
// the same model with the same seed; --batch-size is the GLOBAL batch, each rank takes its slice of the
// same shuffled batch (BatchIterator's shard), gradients are averaged weighted by the ranks' sample
// counts, BatchNorm uses the global batch statistics (sync_batch_norm), so W processes compute the same
// step as one process up to float rounding. Only rank 0 writes files.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace autoqnn::dist {

struct DistOptions {
  int rank = -1;          // -1: from $RANK (default 0)
  int world_size = 0;     // 0: from $WORLD_SIZE (default 1)
  int local_rank = -1;    // -1: from $LOCAL_RANK (default: rank); picks cuda:<local_rank> for NCCL
  std::string master_addr;  // "": from $MASTER_ADDR (default 127.0.0.1)
  int master_port = 0;      // 0: from $MASTER_PORT (default 29500)
  double timeout_s = 120;   // connecting, every collective, every store read
  std::string backend = "auto";  // auto (nccl for a CUDA device when built with it, else gloo) | gloo | nccl
  // Training-mode BatchNorm statistics: "sync" = over the global batch (the run equals one process; a
  // blocking collective per BatchNorm layer in forward and in backward), "local" = each rank's slice, like
  // PyTorch DDP (no collective in forward; the running statistics are averaged over the ranks at the end of
  // every epoch, average_buffers). On 2 cores "local" trains ResNet-20 1.9x faster than one process, "sync"
  // 1.2x (docs/benchmarks.md). Activation quantizers' batch ranges are reduced over the ranks either way.
  std::string batch_stats = "sync";

  // Fills the unset fields from the environment (torchrun's contract) and checks them; throws
  // std::invalid_argument naming the variable / flag and value.
  DistOptions resolved() const;
};

// Creates the store and the process group (world size > 1) and installs the activation quantizers'
// batch-statistic reducer (quantizer.h set_batch_stat_reducer: max / min / mean over the ranks); logs one line. Throws std::runtime_error
// naming the master address, port and timeout when the ranks cannot meet within the timeout.
void init(const DistOptions& opt, torch::Device device = torch::kCPU);
void shutdown();  // drops the process group (also at exit)

bool active();     // a process group exists (world size > 1, or a backend named for one process)
int rank();        // 0 when not active
int world_size();  // 1 when not active
bool is_main();    // rank 0: the one that writes files and logs progress
std::string backend_name();  // "" when not active
bool built_with(const std::string& backend);  // "gloo" | "nccl": compiled into this build
double timeout_seconds();
// BatchNorm statistics over the global batch (active and --dist-bn sync).
bool sync_batch_stats();

// Collectives (no-ops when not active). In place, every rank must call them in the same order.
enum class Reduce { Sum, Max, Min };
void all_reduce(std::vector<torch::Tensor>& tensors, Reduce op);
void all_reduce_sum(std::vector<torch::Tensor>& tensors);
void all_reduce_sum(torch::Tensor& t);
void broadcast(std::vector<torch::Tensor>& tensors, int root = 0);
void barrier();

// Sums `x` over the ranks, differentiably: the backward pass all-reduces the gradient (every rank's loss
// depends on every rank's input). Used by sync_batch_norm.
torch::Tensor all_reduce_sum_autograd(const torch::Tensor& x);

// Rank 0's parameters and buffers to every rank (the start of a run: identical replicas).
void broadcast_module(torch::nn::Module& m);
// Buffers only (BatchNorm running statistics, quantizer state) from rank 0.
void broadcast_buffers(torch::nn::Module& m);

// Every rank publishes `settings` under `what` in the store and compares with rank 0's; any difference
// throws std::invalid_argument on every rank, naming the keys and both values.
void check_same_settings(const std::string& what, const nlohmann::json& settings);

// Checks that every rank computed the same `text` (e.g. the derived policy): a 64-bit hash of it is
// all-reduced (max and min); when they differ, every rank throws std::runtime_error naming `what`.
void check_same_everywhere(const std::string& what, const std::string& text);

// Every rank's buffers (BatchNorm running statistics, activation quantizers' running ranges) bit for bit
// equal: check_same_everywhere on their bytes. Holds by construction (SyncBN, the quantizers' reduced batch
// statistics); a failure means the replicas diverged.
void check_same_buffers(torch::nn::Module& m, const std::string& when);
// --dist-bn local: every floating-point buffer (the BatchNorm running statistics; the others are equal
// already, and stay so) replaced by its mean over the ranks, so that the replicas agree again (call where
// check_same_buffers follows). A no-op when not active or under sync.
void average_buffers(torch::nn::Module& m);

// Bucketed gradient averaging for a fixed parameter list (same order on every rank): after backward,
// each rank's gradients are scaled by `weight` (its share of the global batch, e.g. n_r / N), packed
// into flat buffers of at most `bucket_bytes`, summed over the ranks (asynchronous all-reduce per bucket,
// then one wait), and unpacked. A parameter without a gradient on some rank counts as zero there; it
// gets a gradient when any rank has one, so optimisers step the same parameters everywhere.
//
// Overlapped with backward (`overlap`): buckets are formed in reverse parameter order (the order backward
// produces gradients), gradient hooks copy each gradient into its bucket as it is computed, and a bucket's
// all-reduce starts as soon as its last gradient arrives, while backward goes on; `average` after
// backward starts the buckets left (parameters without a gradient) and waits. Needs the same autograd
// graph on every rank (the same modules and sampled candidates: true for train / finetune and the
// search's weight step), since the ranks start the buckets in the order their hooks fire. Call
// `arm(weight)` before backward; without arm, average() packs everything after backward.
class GradientAverager {
 public:
  explicit GradientAverager(std::vector<torch::Tensor> params, int64_t bucket_bytes = 8 << 20, bool overlap = false);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;
  void arm(double weight);      // overlap: before backward (no-op when not active or not overlapping)
  void average(double weight);  // after backward; no-op when not active
  size_t num_buckets() const { return buckets_.size(); }
  int64_t started_in_backward() const { return started_in_backward_; }  // buckets the hooks started, last step

 private:
  void on_grad(size_t i, const torch::Tensor& g);
  void start(size_t b);
  void finish();
  std::vector<torch::Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;  // indices into params_, per dtype/device
  bool overlap_ = false;
  // overlap state (one backward)
  bool armed_ = false;
  double weight_ = 1;
  std::vector<size_t> bucket_of_, offset_of_, slot_of_;
  std::vector<int64_t> bucket_numel_;
  std::vector<torch::Tensor> flats_;
  std::vector<size_t> ready_;
  std::vector<bool> started_;
  std::vector<std::shared_ptr<void>> works_;  // c10d::Work, type-erased (c10d headers stay in the .cpp)
  std::vector<unsigned> hooks_;
  int64_t started_in_backward_ = 0;
};

// The part of a global batch of `n` samples that rank `r` of `w` takes: [begin, end) with sizes differing
// by at most one (the first n % w ranks take one more).
std::pair<int64_t, int64_t> shard_range(int64_t n, int r, int w);

// Wall-clock deadline helper for messages: "within 120 s".
std::string timeout_text();

}  // namespace autoqnn::dist
