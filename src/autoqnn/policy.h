// The per-layer quantization policy: the contract between search and deployment (docs/policy.md,
// configs/policy.schema.json). Versioned JSON; layer facts (shape, params, MACs, bytes) are derived from
// the model and re-checked on read so a policy cannot silently be applied to another model.
// Implemented one concept per file: policy.cpp (members, blank / uniform policies), policy_io.cpp (JSON,
// files; the one validator of a policy on load), policy_totals.cpp (cost accounting), policy_check.cpp,
// policy_apply.cpp.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "quantizers/spec.h"

namespace autoqnn {

// format_version: 1 = the layout of docs/policy.md. A reader accepts 1..kPolicyMaxFormatVersion and names
// the version it cannot read; a writer writes the lowest version that expresses the policy
// (policy_required_version): 2 only when a layer uses per-channel bit allocation (channel_bits).
constexpr int kPolicyFormatVersion = 1;
constexpr int kPolicyMaxFormatVersion = 2;

struct LayerPolicy {
  std::string name;                     // dotted layer name
  quant::QuantSpec weight;              // scheme spec; "fp32" = float
  quant::QuantSpec act;                 // input-activation spec; "fp32" = float
  // ---- facts derived from the model (written for readers, re-checked on read) ----
  std::string kind;                     // conv2d | linear
  std::vector<int64_t> shape;           // weight shape
  int64_t params = 0;                   // weight elements
  int64_t macs = 0;                     // per image
  int64_t act_numel = 0;                // input activation elements per image
  int64_t weight_bytes = 0;             // codes + scales/tables (fp32: 4 * params)
  double weight_bits = 0;               // 8 * weight_bytes / params
  int act_bits = 32;                    // bits of the input activation (32 when fp32)
  // ---- format_version 2 (post-training quantization, docs/ptq.md) ----
  // Per-output-channel weight bitwidths (empty = every channel at weight.bits): channel c is quantized as
  // its own tensor at channel_bits[c] (quant::ChannelWeightQuantizer) and accounted channel by channel.
  std::vector<int> channel_bits;
  // Per-input-channel activation bitwidths (empty = act.bits): one act quantizer per input channel.
  std::vector<int> act_channel_bits;
  // Weight bias correction: "" (none), "mean" or "mean+var"; adds 1 or 2 float32 per output channel.
  std::string bias_correction;
};

struct PolicyTotals {
  int64_t params = 0;
  int64_t weight_bytes = 0;       // sum of the layers' weight_bytes
  int64_t fp32_weight_bytes = 0;  // 4 * params
  double avg_weight_bits = 0;     // 8 * weight_bytes / params
  int64_t act_bytes = 0;          // activation memory footprint: the largest quantized input tensor (bytes/image)
  double bops = 0;                // sum of MACs * weight code bits * act bits (per image)
};

struct Policy {
  int format_version = kPolicyFormatVersion;
  std::string model;              // zoo name
  std::string fingerprint;        // model_fingerprint()
  ModelConfig config;             // the input the facts were measured with (channels, image size, classes)
  std::vector<LayerPolicy> layers;
  PolicyTotals totals;
  nlohmann::json search;          // optional provenance (null when none)

  LayerPolicy* find(const std::string& name);
  const LayerPolicy* find(const std::string& name) const;
  nlohmann::json to_json() const;                  // canonical (sorted keys; for embedding in checkpoints)
  // The file form: document key order (format_version, model, layers in model order, totals, search),
  // 2-space indent, trailing newline. A function of the Policy only, so write -> read -> write is
  // byte-identical.
  std::string dump() const;
  // Parses and validates the structure. Throws PolicyError naming the source, key or layer. The single
  // validator of a policy document on load (the JSON Schema is not applied on load; see policy_io.cpp).
  static Policy from_json(const nlohmann::json& j, const std::string& source = "policy");
};

struct PolicyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A policy for `model` with every layer in fp32 and all facts filled.
Policy blank_policy(Model& model);
// Recomputes each layer's bytes/bits and the totals from its specs and facts.
void update_totals(Policy& p);
// Every layer quantized with `weight` / `act`; keep_first_last > 0 puts the first and last layer at
// "fixed:<keep_first_last>" for weights (and activations when act is not fp32).
Policy uniform_policy(Model& model, const quant::QuantSpec& weight, const quant::QuantSpec& act,
                      int keep_first_last = 0);
// Checks the policy against the model: fingerprint, same layer set (unknown / missing layers named),
// shapes, specs valid for their role. Throws PolicyError.
void check_policy(const Policy& p, Model& model);
// Same quantizers (specs, per-channel bits, bias correction) for a layer.
bool same_quantizers(const LayerPolicy& a, const LayerPolicy& b);
// Installs the quantizers of `p` into the model's layer slots (check_policy first). Layers with
// channel_bits or bias_correction get a quant::ChannelWeightQuantizer, layers with act_channel_bits a
// quant::ChannelActQuantizer.
void apply_policy(Model& model, const Policy& p);

Policy load_policy(const std::string& path);            // JSON errors carry line/column
// Parses policy text; `source` names it in errors ("P.json:3:14: malformed JSON: ...").
Policy parse_policy(const std::string& text, const std::string& source = "policy");
// The lowest format_version that can express `p` (1, or 2 when a layer has channel_bits, act_channel_bits
// or bias_correction).
int policy_required_version(const Policy& p);
void save_policy(const std::string& path, const Policy& p);  // atomic

// "6x1x5x5" ("scalar" for no dimensions): weight shapes in messages and tables.
std::string shape_string(const std::vector<int64_t>& shape);

// (The human-readable table of `autoqnn policy show` is the CLI's: src/cli/policy_table.h.)

}  // namespace autoqnn
