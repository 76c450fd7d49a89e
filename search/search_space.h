// Search spaces (configs/search_space/*.json): the candidate quantizers of every layer.
//
//   {
//     "name": "default",
//     "description": "every weight scheme at sensible bit sets",
//     "granularity": "per-layer",                   // or "shared": one choice for the whole model
//     "weight": ["binary", "twn", "esb:{3,4,5}:k=1", "fixed:{2..8}"],
//     "act": ["fixed:{4,8}"],                       // ["fp32"] = activations not quantized
//     "overrides": [
//       {"layers": ["first", "last"], "weight": ["fixed:8"], "act": ["fixed:8"]},
//       {"layers": "layer3.*", "act": ["fixed:8"]}
//     ]
//   }
//
// A candidate is a quantizer spec; "{...}" expands to one spec per listed value ("{3,4,5}", ranges "{2..8}",
// mixes "{1,3..5}"), several groups expand to their cartesian product. Overrides replace the weight and/or
// act list of the layers they select: "first" / "last" (forward order), an exact dotted layer name, or a
// glob ("*", "?"). Later overrides win. Every error names the file and the key (e.g. "weight[2]").
//
// "act_by_input_sign": true keeps, on each layer, the act candidates that suit the sign of its FP32 input:
// unsigned ones (pact) where the input is never negative (after a ReLU), signed ones (uniform, fixed)
// elsewhere (the normalised image); `uniform:...:asym` suits both, fp32 always stays, and a layer keeps its
// list when the filter would leave no quantized candidate. The signs are measured once on two train
// batches (measure_input_signs) and stored in the space as "input_one_sided": {layer: bool}, so a state or
// a policy's provenance re-resolves the same candidates without data.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "quantizers/spec.h"

namespace autoqnn::search {

enum class Granularity { PerLayer, Shared };
const char* granularity_name(Granularity g);

// The (weight spec x act spec) candidates of one layer. Joint candidate c = w_index * act.size() + a_index.
struct CandidateSet {
  std::vector<quant::QuantSpec> weight;
  std::vector<quant::QuantSpec> act;
  int64_t size() const { return static_cast<int64_t>(weight.size() * act.size()); }
  int64_t weight_index(int64_t c) const { return c / static_cast<int64_t>(act.size()); }
  int64_t act_index(int64_t c) const { return c % static_cast<int64_t>(act.size()); }
  std::string label(int64_t c) const;  // "esb:4:k=1 / fixed:8"
  std::string signature() const;       // equal sets <=> equal signatures
  bool operator==(const CandidateSet& o) const { return weight == o.weight && act == o.act; }
};

struct LayerOverride {
  std::string where;                   // "overrides[1]" (for error messages)
  std::vector<std::string> selectors;  // "first", "last", names, globs
  bool has_weight = false, has_act = false;
  std::vector<quant::QuantSpec> weight, act;
};

struct SearchSpace {
  std::string source = "search space";  // file path (or a label) used in every error message
  std::string name;
  std::string description;
  Granularity granularity = Granularity::PerLayer;
  CandidateSet base;
  std::vector<LayerOverride> overrides;
  bool act_by_input_sign = false;
  std::map<std::string, bool> input_one_sided;  // measured (or read back): layer -> input never negative
  nlohmann::json raw;  // the JSON as read (stored in the search state and the policy provenance)

  // Parses and validates (scheme names, bits, parameters, roles; quantizers are constructed once so that
  // scheme-specific constraints such as esb's k < bits - 1 are checked here). Throws
  // std::invalid_argument "<source>: <key>: <what is wrong>".
  static SearchSpace from_json(const nlohmann::json& j, const std::string& source = "search space");
  static SearchSpace load(const std::string& path);  // JSON syntax errors carry line/column

  // Candidate set of each layer (layer_names in forward order). Throws naming the override whose
  // selector matches no layer (listing the layer names); with act_by_input_sign, std::logic_error when the
  // signs were never set.
  std::vector<CandidateSet> resolve(const std::vector<std::string>& layer_names) const;
  // Records the input signs (and writes them into `raw`).
  void set_input_signs(const std::map<std::string, bool>& one_sided);
};

// act_by_input_sign without signs yet: measures them on `model` (FP32, no quantizers) over two batches of
// `train` and records them. A no-op otherwise.
void measure_input_signs(SearchSpace& space, Model& model, const TensorDataset& train, uint64_t seed);

// "esb:{3,4,5}:k=1" -> {"esb:3:k=1", "esb:4:k=1", "esb:5:k=1"}. Throws std::invalid_argument on
// unbalanced braces, empty sets, non-integers and reversed ranges.
std::vector<std::string> expand_braces(const std::string& text);
// Shell-style glob: '*' any run (also across dots), '?' one character.
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace autoqnn::search
