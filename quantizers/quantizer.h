// The quantizer contract shared by every scheme (one file per scheme, see registry.h for the table).
//
// A quantizer fake-quantizes a tensor: forward value on the level set, gradient by the selected backward
// rule. Every scheme computes its output as   out = qn * scale + offset   where qn ("normalised level")
// is exactly representable, so that encode() can hand export the integer codes and the dequantisation
// data (table / scale / offset) that reproduce the eval-mode output bit for bit.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quantizers/spec.h"

namespace autoqnn::quant {

enum class Role { Weight, Activation };
enum class Backward { STE, PWL, PWL_C };

const char* role_name(Role r);
const char* backward_name(Backward b);
Backward parse_backward(const std::string& s);  // "ste" | "pwl" | "pwl_c"; throws listing the valid ones

// Packed view of a quantized tensor.  value = T[code] * scale + offset, evaluated in float32 in that
// order, where T = table (float32 [L] or per-channel [C, L]) when defined, else the affine integer grid
// T[k] = k + grid_base.  scale/offset are [] (per tensor) or [C] (per channel along `axis`).
struct Encoded {
  torch::Tensor codes;   // int64, same shape as the input, values in [0, 2^code_bits)
  int code_bits = 0;     // bits per packed code
  torch::Tensor table;   // optional level table (stored, counted in the size)
  double grid_base = 0;  // used when table is undefined (metadata, not counted)
  torch::Tensor scale;   // float32 [] or [C]
  torch::Tensor offset;  // optional float32 [] or [C] (undefined = 0, not stored)
  int64_t axis = -1;     // channel axis for per-channel scale/offset/table rows; -1 = per tensor

  torch::Tensor dequantize() const;  // the reference reconstruction used by export --verify
  int64_t code_bytes() const;        // ceil(numel * code_bits / 8): codes are bit-packed per tensor
  int64_t aux_bytes() const;         // 4 bytes per float of table, scale, offset
  int64_t stored_bytes() const { return code_bytes() + aux_bytes(); }
};

// Storage of one quantized tensor as the policy accounts it; must equal encode(x).stored_bytes().
struct StorageCost {
  int64_t numel = 0;
  int code_bits = 0;        // bits per element code
  int64_t aux_floats = 0;   // float32 values of table + scale + offset
  int64_t code_bytes() const { return (numel * code_bits + 7) / 8; }
  int64_t bytes() const { return code_bytes() + 4 * aux_floats; }
  int64_t bits() const { return 8 * bytes(); }
};

// The keys every scheme accepts, parsed: grad=, r=, per_channel / axis=, momentum=. Throws
// std::invalid_argument naming the bad key ("quantizer '<spec>': ..."). validate_spec and the Quantizer
// constructor share it.
struct CommonOptions {
  Backward backward = Backward::STE;
  double grad_ratio = 0.0;  // PWL r
  int64_t axis = -1;        // per-channel axis, -1 = per tensor
  double momentum = 0.9;    // EMA momentum for activation statistics
};
CommonOptions common_options(const QuantSpec& spec);

// Channels of a tensor of `shape` along `axis` (1 when axis < 0); `spec` names the quantizer in the error
// when the axis is out of range.
int64_t channels_along(int64_t axis, at::IntArrayRef shape, const QuantSpec& spec);
// Throws std::invalid_argument naming the spec when its per-channel axis is not below `rank` (the
// dimensions of the tensor it will quantize: a weight's shape, or an activation's with the batch dim).
void check_axis(const QuantSpec& spec, int64_t rank, const char* what = "a tensor");
// Storage of a tensor of `shape` under a validated spec: spec.bits per element code, plus
// aux_per_channel * C + aux_fixed floats (C = channels along the spec's axis). The schemes' storage
// functions (the `storage` column of the scheme table) are written with it.
StorageCost storage_of(const QuantSpec& spec, at::IntArrayRef shape, int64_t aux_per_channel, int64_t aux_fixed = 0);

// What a quantizable layer holds in its weight / activation slot. Schemes (Quantizer), the supernet's
// mixed quantizer and QPL's learned-bit quantizer all implement it.
class FakeQuantizer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual std::string describe() const = 0;  // spec-like text for logs / policy
};

class Quantizer : public FakeQuantizer {
 public:
  Quantizer(QuantSpec spec, Role role);

  const QuantSpec& spec() const { return spec_; }
  Role role() const { return role_; }
  int bits() const { return spec_.bits; }
  Backward backward_mode() const { return backward_; }
  int64_t axis() const { return axis_; }  // -1 per tensor
  std::string describe() const override { return spec_.to_string(); }

  // Fused kernels (the CPU loops; the CUDA kernels where built) on (default) or off. Off runs the composite
  // tensor-op path, which computes the same values: tests and benchmarks compare the two on the object they
  // measure. A property of this quantizer only (no process-wide switch).
  bool fused() const { return fused_; }
  void set_fused(bool on) { fused_ = on; }

  // Fake-quantize at the spec's bitwidth.
  torch::Tensor forward(const torch::Tensor& x) override { return quantize(x, bits()); }
  // Fake-quantize at `bits` (valid for the scheme; QPL calls this with neighbouring bitwidths).
  virtual torch::Tensor quantize(const torch::Tensor& x, int bits) = 0;
  // Codes + dequantisation data reproducing the eval-mode quantize(x, bits()) bit for bit.
  virtual Encoded encode(const torch::Tensor& x) = 0;
  // Sorted representable values for x (per tensor; per-channel schemes: of channel `channel`).
  virtual torch::Tensor levels(const torch::Tensor& x, int64_t channel = 0);
  // Storage for a tensor of `shape` at bits(); consistent with encode().
  virtual StorageCost storage(at::IntArrayRef shape) const = 0;
  // Data-dependent initialisation of learned parameters / running statistics (calibration batches).
  virtual void calibrate(const torch::Tensor& x) {}

 protected:
  // ---- helpers shared by the schemes ----
  // Straight-through combine: xn = input in level units (carries the gradient), qn = its quantized value
  // (no gradient needed). Applies the backward rule; the forward value is exactly qn in eval mode and for
  // STE/PWL_C with r = 0 (PWL's r only acts while training). lo/hi = range of the level set (PWL_C clip).
  torch::Tensor ste(const torch::Tensor& xn, const torch::Tensor& qn, double lo, double hi) const;
  torch::Tensor ste(const torch::Tensor& xn, const torch::Tensor& qn, const torch::Tensor& lo,
                    const torch::Tensor& hi) const;
  // Per-channel helpers: x viewed as [C, rest] along axis_ and the broadcast shape of a [C] statistic.
  torch::Tensor channel_rows(const torch::Tensor& x) const;
  std::vector<int64_t> stat_shape(const torch::Tensor& x) const;
  torch::Tensor bcast(const torch::Tensor& stat, const torch::Tensor& x) const;  // [] or [C] -> broadcastable
  int64_t num_channels(at::IntArrayRef shape) const;  // 1 when per tensor
  // Throws std::invalid_argument when bits is outside the scheme's range (the scheme table's row).
  void check_bits(int bits) const;
  // Throws std::domain_error naming the scheme when a statistic is NaN/inf (NaN input is an error).
  void check_finite(const torch::Tensor& stat, const char* what) const;
  // Running-statistic update for activation quantizers: training -> EMA update and return batch value;
  // eval -> return the running value (the batch value if never updated).
  // Buffers must be added in the constructor (so checkpoints load into an identical module tree).
  torch::Tensor running(const std::string& buffer, const torch::Tensor& batch_value);
  void add_running(const std::string& buffer, std::vector<int64_t> shape = {});

  QuantSpec spec_;
  Role role_;
  Backward backward_ = Backward::STE;
  double grad_ratio_ = 0.0;  // PWL r
  int64_t axis_ = -1;        // per-channel axis, -1 = per tensor
  double momentum_ = 0.9;    // EMA momentum for activation statistics
  bool fused_ = true;        // see fused()
};

using QuantizerPtr = std::shared_ptr<Quantizer>;

// Data-parallel runs (docs/distributed.md): a training-mode batch statistic of an activation quantizer
// (max|x|, min, max, ...) is the rank's slice's, not the global batch's. Core's distributed.cpp installs a
// reducer while a process group is active (this layer cannot call c10d); Quantizer::running() then uses the
// combined value for the forward pass and the EMA, so every rank holds the same state and max / min
// statistics are those of one process on the whole batch. Other statistics (ternary delta / alpha,
// residual alphas) are averaged over the ranks: equal everywhere, close to the global value.
enum class StatReduce { Max, Min, Mean };
StatReduce stat_reduce_of(const std::string& buffer);  // "max_abs" / "max" -> Max, "min" -> Min, else Mean
using BatchStatReducer = std::function<torch::Tensor(const torch::Tensor&, StatReduce)>;
void set_batch_stat_reducer(BatchStatReducer reducer);  // empty: none (single process)

}  // namespace autoqnn::quant
