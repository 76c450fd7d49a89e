// Cost accounting of a policy: per-layer weight bytes / bits, activation bytes, BOPs, and the totals
// (update_totals). Kept apart so that the cost model can replace these bodies in one place.
#include "autoqnn/policy.h"

#include <algorithm>

#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn {

using quant::QuantSpec;
using quant::Role;

namespace {

// Bits of a spec as the policy counts them: fp32 -> 32.
int spec_bits(const QuantSpec& s) { return s.is_fp() ? 32 : s.bits; }

// Storage of a layer's weight under its spec (per-channel bits and the bias correction when given).
int64_t layer_weight_bytes(const LayerPolicy& l) {
  if (l.weight.is_fp()) return quant::storage_cost(l.weight, l.shape, Role::Weight).bytes();
  return quant::ChannelWeightQuantizer::storage_bytes(l.weight, l.shape, l.channel_bits,
                                                      quant::parse_correction(l.bias_correction));
}

double mean_bits(const std::vector<int>& bits, int dflt) {
  if (bits.empty()) return dflt;
  double s = 0;
  for (int b : bits) s += b;
  return s / static_cast<double>(bits.size());
}

// MACs x weight bits x act bits; with per-channel bits every (output, input) channel pair carries an equal
// share of the MACs, so the sum is MACs x mean weight bits x mean act bits.
double layer_bops(const LayerPolicy& l) {
  const double abits = l.act.is_fp() ? 32.0 : mean_bits(l.act_channel_bits, l.act_bits);
  const double wbits = l.weight.is_fp() ? 32.0 : mean_bits(l.channel_bits, spec_bits(l.weight));
  return static_cast<double>(l.macs) * wbits * abits;
}

// Bytes of the layer's quantized input activation per image (per-channel bits: channel by channel).
int64_t layer_act_bytes(const LayerPolicy& l) {
  if (l.act_channel_bits.empty() || l.act.is_fp()) return (l.act_numel * l.act_bits + 7) / 8;
  const int64_t per = l.act_numel / static_cast<int64_t>(l.act_channel_bits.size());
  int64_t bits = 0;
  for (int b : l.act_channel_bits) bits += per * b;
  return (bits + 7) / 8;
}

}  // namespace

void update_totals(Policy& p) {
  PolicyTotals t;
  for (auto& l : p.layers) {
    try {
      l.weight = quant::validate_spec(l.weight, Role::Weight);
      l.weight_bytes = layer_weight_bytes(l);
    } catch (const std::exception& e) {
      throw PolicyError("layer '" + l.name + "': weight '" + l.weight.to_string() + "': " + e.what());
    }
    try {
      l.act = quant::validate_spec(l.act, Role::Activation);
    } catch (const std::exception& e) {
      throw PolicyError("layer '" + l.name + "': act '" + l.act.to_string() + "': " + e.what());
    }
    l.weight_bits = l.params > 0 ? 8.0 * static_cast<double>(l.weight_bytes) / static_cast<double>(l.params) : 0;
    l.act_bits = spec_bits(l.act);
    t.params += l.params;
    t.weight_bytes += l.weight_bytes;
    t.act_bytes = std::max(t.act_bytes, layer_act_bytes(l));
    t.bops += layer_bops(l);
  }
  t.fp32_weight_bytes = 4 * t.params;
  t.avg_weight_bits = t.params > 0 ? 8.0 * static_cast<double>(t.weight_bytes) / static_cast<double>(t.params) : 0;
  p.totals = t;
}

}  // namespace autoqnn
