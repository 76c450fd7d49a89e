// Per-channel bitwidths and post-quantization weight correction (PTQ, docs/ptq.md).
//
// ChannelWeightQuantizer wraps one scheme (its spec) for a layer weight [out, ...]:
//   - channel_bits (one bitwidth per output channel): channel c is quantized as its own tensor w[c:c+1]
//     by the scheme at channel_bits[c] (its own scale / table), exactly as the policy accounts it;
//   - correction "mean" / "mean+var" (Banner et al. bias correction): per output channel c
//       out_c = base_c * corr_scale[c] + corr_shift[c]       (float32, in that order)
//     with corr_scale = 1 for "mean". fit_correction(w) sets corr_scale = ||w_c - E w_c|| / ||q_c - E q_c||
//     (mean+var) and corr_shift = E w_c - corr_scale E q_c, so the output's per-channel mean (and spread)
//     equals the float weight's. Both are stored (4 bytes per float) and exported.
// ChannelActQuantizer gives every input channel (dim 1) of an activation its own quantizer instance
// (own running statistics, own bitwidth).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "quantizers/quantizer.h"

namespace autoqnn::quant {

enum class Correction { None, Mean, MeanVar };
Correction parse_correction(const std::string& s);  // "" / "none" | "mean" | "mean+var"; throws listing them
const char* correction_name(Correction c);          // "none" | "mean" | "mean+var"
int correction_floats_per_channel(Correction c);    // 0, 1 (shift), 2 (scale + shift)

class ChannelWeightQuantizer : public FakeQuantizer {
 public:
  // channel_bits empty = the whole tensor at spec.bits. Throws when a bitwidth is invalid for the scheme.
  ChannelWeightQuantizer(QuantSpec spec, std::vector<int> channel_bits, Correction corr, int64_t out_channels);

  torch::Tensor forward(const torch::Tensor& w) override;  // base, then the correction
  std::string describe() const override;
  torch::Tensor base(const torch::Tensor& w);               // quantized, before the correction
  // Packed parts: 1 (whole tensor) or one per output channel (channel_bits).
  std::vector<Encoded> encode_parts(const torch::Tensor& w);
  void calibrate(const torch::Tensor& w);                   // every inner quantizer
  void fit_correction(const torch::Tensor& w);              // no-op for Correction::None

  const QuantSpec& spec() const { return spec_; }
  const std::vector<int>& channel_bits() const { return channel_bits_; }
  Correction correction() const { return corr_; }
  torch::Tensor corr_scale, corr_shift;  // [C] buffers (registered when corr != None)

  // Bytes as the policy accounts them: per-part storage + 4 * floats of the correction.
  static int64_t storage_bytes(const QuantSpec& spec, const std::vector<int64_t>& shape,
                               const std::vector<int>& channel_bits, Correction corr);

 private:
  QuantizerPtr at_bits(int bits) const;
  QuantSpec spec_;
  std::vector<int> channel_bits_;
  Correction corr_;
  int64_t C_;
  std::map<int, QuantizerPtr> q_;  // by bitwidth ("b<bits>")
};

class ChannelActQuantizer : public FakeQuantizer {
 public:
  ChannelActQuantizer(const QuantSpec& spec, const std::vector<int>& channel_bits);
  torch::Tensor forward(const torch::Tensor& x) override;  // x [N, C, ...]; channel c by quantizer c
  std::string describe() const override;
  const std::vector<QuantizerPtr>& channels() const { return q_; }
  const std::vector<int>& channel_bits() const { return bits_; }
  // While set, every forward first calls calibrate(slice) on each channel's quantizer (convert's
  // calibration pass; see calibrate_model).
  bool calibrate_on_forward = false;

 private:
  QuantSpec spec_;
  std::vector<int> bits_;
  std::vector<QuantizerPtr> q_;  // "c<i>"
};

}  // namespace autoqnn::quant
