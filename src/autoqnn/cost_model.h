// The one cost model: what a quantized layer costs, per image, and how layer costs add up to a model's.
// Used by the policy totals (policy_totals.cpp), the supernet's candidates and QPL's bit options
// (search/), and the budget repair (search/constraints.h): the three agree by construction.
//
//   weight bytes  = quant::storage_cost(weight spec, shape).bytes()      codes + tables/scales; summed
//   act bytes     = ceil(act bits * input elements / 8)                  the footprint: max over layers
//   BOPs          = MACs * weight bits * act bits                        summed; fp32 counts 32 bits
//
// A cost kind is one row of kCostKinds (name, how layers combine, how a budget on it is penalised and
// named). Adding a budget kind = a field in Cost, a row in cost_model.cpp, and its CLI flag.
#pragma once
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "quantizers/spec.h"

namespace autoqnn {

enum class CostKind : int { WeightBytes = 0, ActBytes = 1, Bops = 2 };
constexpr int kNumCostKinds = 3;

// How the per-layer values of a kind make the model's value.
enum class Combine { Sum, Max };
// How a budget on the kind is enforced during a search: TwoSided drives the expected cost TO the budget
// (unused budget is lost accuracy), AtMost only pushes it under (per layer for Max kinds).
enum class BudgetShape { TwoSided, AtMost };

struct CostKindTraits {
  CostKind kind;
  const char* key;       // JSON key: "weight_bytes" | "act_bytes" | "bops"
  const char* label;     // in messages: "weight", "activation", "BOPs"
  const char* what;      // in a budget line: "weights", "act footprint", "BOPs"
  Combine combine;
  BudgetShape shape;
  bool required;         // a search needs a budget of this kind
  // The budget flag: its name, the cost units one flag unit is, the help text, how the minimum is printed
  // (rounded up so that the printed value is feasible when passed back).
  const char* flag;      // "--budget-kib"
  double flag_unit;      // 1024 (KiB) | 1
  const char* help;
  int min_decimals;      // -1: %g-style with 6 significant digits
  std::string (*format)(double value);  // a value of this kind for messages
  // Weights also take a per-weight form: --avg-bits B = B * num_weights / 8 bytes (nullptr for others).
  const char* per_weight_flag;
  // BOPs also take a per-MAC form: --wa-bits W,A = W * A * MACs, the BOPs of uniform W-bit weights and
  // A-bit activations (the CLI passes the product W * A; nullptr for others).
  const char* per_mac_flag;
};
const std::array<CostKindTraits, kNumCostKinds>& cost_kinds();
const CostKindTraits& cost_kind(CostKind k);

// A cost vector (per image): one value per kind. Named fields for reading; at() for generic code.
struct Cost {
  double weight_bytes = 0;
  double act_bytes = 0;  // largest input tensor (Max over layers)
  double bops = 0;
  double& at(CostKind k);
  double at(CostKind k) const;
  // Adds a layer's cost by each kind's Combine rule.
  void combine(const Cost& layer);
  nlohmann::json to_json(int64_t num_weights = 0) const;  // adds kib / avg_bits when num_weights > 0
};
// Totals of per-layer costs (Combine per kind).
Cost combine_costs(const std::vector<Cost>& layers);

// The shape facts of a layer that its cost depends on (a subset of LayerProfile / LayerPolicy).
struct LayerDims {
  std::vector<int64_t> weight_shape;
  int64_t macs = 0;
  int64_t act_numel = 0;  // input-activation elements per image
};
LayerDims layer_dims(const LayerProfile& p);

// Bits of a spec as costs count them: fp32 -> 32.
int cost_bits(const quant::QuantSpec& s);
int64_t weight_cost_bytes(const quant::QuantSpec& weight, const std::vector<int64_t>& shape);
int64_t act_cost_bytes(int bits, int64_t act_numel);
double bops_of(int64_t macs, double weight_bits, double act_bits);
// The exact cost of a layer with a weight spec and an act spec.
Cost layer_cost(const LayerDims& d, const quant::QuantSpec& weight, const quant::QuantSpec& act);

// "12.345 KiB" / "1.2 MBOPs" for messages.
std::string format_kib(double bytes);
std::string format_bops(double bops);
// 8 * bytes / num_weights (0 when there are no weights).
double avg_bits(double bytes, int64_t num_weights);

}  // namespace autoqnn
