// Cost accounting of a policy: per-layer weight bytes / bits and the totals (update_totals), through the
// one cost model (cost_model.h) that the search's candidates and the budget repair use too.
#include "autoqnn/policy.h"

#include "autoqnn/cost_model.h"

#include <algorithm>

#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn {

using quant::QuantSpec;
using quant::Role;

namespace {

// Storage of a layer's weight: the cost model's, plus per-channel bits and the bias correction when given.
int64_t layer_weight_bytes(const LayerPolicy& l) {
  if (l.weight.is_fp() || (l.channel_bits.empty() && l.bias_correction.empty()))
    return weight_cost_bytes(l.weight, l.shape);
  return quant::ChannelWeightQuantizer::storage_bytes(l.weight, l.shape, l.channel_bits,
                                                      quant::parse_correction(l.bias_correction));
}

double mean_bits(const std::vector<int>& bits, int dflt) {
  if (bits.empty()) return dflt;
  double s = 0;
  for (int b : bits) s += b;
  return s / static_cast<double>(bits.size());
}

// The layer's cost (cost_model.h) with per-channel bits: an act quantized channel by channel counts each
// channel's bits; every (output, input) channel pair carries an equal share of the MACs, so the BOPs are
// MACs x mean weight bits x mean act bits.
Cost layer_cost_of(const LayerPolicy& l) {
  Cost c;
  c.weight_bytes = static_cast<double>(l.weight_bytes);
  if (l.act_channel_bits.empty() || l.act.is_fp()) {
    c.act_bytes = static_cast<double>(act_cost_bytes(cost_bits(l.act), l.act_numel));
  } else {
    const int64_t per = l.act_numel / static_cast<int64_t>(l.act_channel_bits.size());
    int64_t bits = 0;
    for (int b : l.act_channel_bits) bits += per * b;
    c.act_bytes = static_cast<double>((bits + 7) / 8);
  }
  const double abits = l.act.is_fp() ? 32.0 : mean_bits(l.act_channel_bits, cost_bits(l.act));
  const double wbits = l.weight.is_fp() ? 32.0 : mean_bits(l.channel_bits, cost_bits(l.weight));
  c.bops = bops_of(l.macs, wbits, abits);
  return c;
}

}  // namespace

void update_totals(Policy& p) {
  PolicyTotals t;
  Cost total;
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
    l.act_bits = cost_bits(l.act);
    t.params += l.params;
    total.combine(layer_cost_of(l));
  }
  t.weight_bytes = static_cast<int64_t>(total.weight_bytes);
  t.act_bytes = static_cast<int64_t>(total.act_bytes);
  t.bops = total.bops;
  t.fp32_weight_bytes = 4 * t.params;
  t.avg_weight_bits = avg_bits(total.weight_bytes, t.params);
  p.totals = t;
}

}  // namespace autoqnn
