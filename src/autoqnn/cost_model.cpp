#include "autoqnn/cost_model.h"

#include <algorithm>
#include <stdexcept>

#include "autoqnn/number_text.h"
#include "quantizers/registry.h"

namespace autoqnn {

const std::array<CostKindTraits, kNumCostKinds>& cost_kinds() {
  // Row order = CostKind values.
  static const std::array<CostKindTraits, kNumCostKinds> rows = {{
      {CostKind::WeightBytes, "weight_bytes", "weight", "weights", Combine::Sum, BudgetShape::TwoSided, true,
       "--budget-kib", 1024.0, "weight budget in KiB (codes + scales/tables)", 3, format_kib, "--avg-bits", nullptr},
      {CostKind::ActBytes, "act_bytes", "activation", "act footprint", Combine::Max, BudgetShape::AtMost, false,
       "--act-budget-kib", 1024.0,
       "activation footprint budget in KiB: the largest quantized input tensor per image (0 = none)", 3, format_kib,
       nullptr, nullptr},
      {CostKind::Bops, "bops", "BOPs", "BOPs", Combine::Sum, BudgetShape::AtMost, false, "--bops", 1.0,
       "BOPs budget per image: sum of MACs x wbits x abits (0 = none)", -1, format_bops, nullptr,
       "--wa-bits"},
  }};
  return rows;
}

const CostKindTraits& cost_kind(CostKind k) { return cost_kinds()[static_cast<size_t>(k)]; }

double& Cost::at(CostKind k) {
  switch (k) {
    case CostKind::WeightBytes: return weight_bytes;
    case CostKind::ActBytes: return act_bytes;
    case CostKind::Bops: return bops;
  }
  throw std::logic_error("Cost::at: unknown cost kind");
}

double Cost::at(CostKind k) const { return const_cast<Cost*>(this)->at(k); }

void Cost::combine(const Cost& layer) {
  for (const auto& t : cost_kinds()) {
    double& v = at(t.kind);
    v = t.combine == Combine::Sum ? v + layer.at(t.kind) : std::max(v, layer.at(t.kind));
  }
}

Cost combine_costs(const std::vector<Cost>& layers) {
  Cost t;
  for (const auto& c : layers) t.combine(c);
  return t;
}

nlohmann::json Cost::to_json(int64_t n) const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& t : cost_kinds()) j[t.key] = at(t.kind);
  if (n > 0) {
    j["weight_kib"] = weight_bytes / 1024.0;
    j["avg_weight_bits"] = avg_bits(weight_bytes, n);
  }
  return j;
}

int cost_bits(const quant::QuantSpec& s) { return s.is_fp() ? 32 : s.bits; }

int64_t weight_cost_bytes(const quant::QuantSpec& weight, const std::vector<int64_t>& shape) {
  return quant::storage_cost(weight, shape, quant::Role::Weight).bytes();
}

int64_t act_cost_bytes(int bits, int64_t act_numel) { return (static_cast<int64_t>(bits) * act_numel + 7) / 8; }

double bops_of(int64_t macs, double weight_bits, double act_bits) {
  return static_cast<double>(macs) * weight_bits * act_bits;
}

LayerDims layer_dims(const LayerProfile& p) { return {p.weight_shape, p.macs, p.input_numel}; }

Cost layer_cost(const LayerDims& d, const quant::QuantSpec& weight, const quant::QuantSpec& act) {
  Cost c;
  c.weight_bytes = static_cast<double>(weight_cost_bytes(weight, d.weight_shape));
  c.act_bytes = static_cast<double>(act_cost_bytes(cost_bits(act), d.act_numel));
  c.bops = bops_of(d.macs, cost_bits(weight), cost_bits(act));
  return c;
}

std::string format_kib(double bytes) { return format_number("%.3f KiB", bytes / 1024.0); }

std::string format_bops(double b) {
  if (b >= 1e9) return format_number("%.4g GBOPs", b / 1e9);
  if (b >= 1e6) return format_number("%.4g MBOPs", b / 1e6);
  return format_number("%.6g BOPs", b);
}

double avg_bits(double bytes, int64_t n) { return n > 0 ? 8.0 * bytes / static_cast<double>(n) : 0.0; }

}  // namespace autoqnn
