// autoqnn policy uniform | show | check: write uniform baselines, print a policy, validate one.
#include <iostream>

#include "autoqnn/data_files.h"
#include "autoqnn/json_schema.h"
#include "autoqnn/policy.h"
#include "autoqnn/json_io.h"
#include "autoqnn/runtime.h"
#include "cli.h"
#include "policy_table.h"
#include "quantizers/registry.h"

namespace autoqnn::cli {

namespace {

const char* kSubs = "uniform | show | check";

// The published schema, found like every data file (data_files.h); "" when it is nowhere.
std::string default_schema_path() { return locate_data_file("configs/policy.schema.json"); }

quant::QuantSpec parse_spec_flag(const std::string& flag, const std::string& text, quant::Role role) {
  try {
    return quant::validate_spec(quant::QuantSpec::parse(text), role);
  } catch (const std::exception& e) {
    throw UsageError(flag + " '" + text + "': " + e.what());
  }
}

int policy_uniform(const std::vector<std::string>& args) {
  CommonOptions c;
  OutputOptions out;
  std::string weight, act = "fp32";
  int keep = 0;
  po::options_description desc("policy uniform options");
  desc.add_options()
    ("model", po::value(&c.model)->required(), "model name (see `autoqnn models`)")
    ("dataset", po::value(&c.dataset)->default_value(c.dataset), "input shape: fashion-mnist | cifar10 | synthetic")
    ("weight", po::value(&weight)->required(), "weight spec for every layer, e.g. fixed:4, esb:4:k=1, fp32")
    ("act", po::value(&act)->default_value(act), "input-activation spec for every layer (fp32 = float)")
    ("keep-first-last", po::value(&keep)->default_value(0),
     "put the first and last layer at fixed:<B> (weights, and activations when --act is not fp32); 0 = off");
  out.add(desc, "policy JSON to write");
  po::variables_map vm;
  if (!parse("policy uniform", "--model NAME --weight SPEC [--act SPEC] [--keep-first-last B] --out P.json", desc,
             args, vm))
    return 0;
  auto w = parse_spec_flag("--weight", weight, quant::Role::Weight);
  auto a = parse_spec_flag("--act", act, quant::Role::Activation);
  if (keep < 0) throw UsageError("--keep-first-last must be >= 0");
  if (keep > 0) parse_spec_flag("--keep-first-last", "fixed:" + std::to_string(keep), quant::Role::Weight);
  auto model = make_model(c.model, c.model_config());
  Policy p = uniform_policy(*model, w, a, keep);
  check_policy(p, *model);  // constructs every quantizer once: scheme-specific parameter errors surface here
  save_policy(out.path, p);
  log_info("wrote " + out.path + ": " + c.model + ", " + std::to_string(p.layers.size()) + " layers, " +
           std::to_string(p.totals.weight_bytes) + " weight bytes, " + std::to_string(p.totals.avg_weight_bits) +
           " bits/weight");
  return 0;
}

int policy_show(const std::vector<std::string>& args) {
  PolicyOptions pol;
  bool json = false;
  po::options_description desc("policy show options");
  pol.add(desc, "policy JSON (also the positional argument)")
    ("json", po::bool_switch(&json), "print the canonical JSON instead of the table");
  po::positional_options_description pos;
  pos.add("policy", 1);
  po::variables_map vm;
  if (!parse("policy show", "P.json [--json]", desc, args, vm, &pos)) return 0;
  Policy p = load_policy(pol.path);
  std::cout << (json ? p.dump() : format_policy_table(p));
  return 0;
}

int policy_check(const std::vector<std::string>& args) {
  CommonOptions c;
  PolicyOptions pol;
  std::string schema;
  po::options_description desc("policy check options");
  desc.add_options()
    ("model", po::value(&c.model), "model the policy must fit (default: the policy's own model)")
    ("dataset", po::value(&c.dataset), "input shape to build the model with (default: the policy's model.input)")
    ("schema", po::value(&schema), "JSON Schema to validate against (default: configs/policy.schema.json)");
  pol.add(desc, "policy JSON (also the positional argument)");
  po::positional_options_description pos;
  pos.add("policy", 1);
  po::variables_map vm;
  if (!parse("policy check", "--model NAME P.json", desc, args, vm, &pos)) return 0;

  const std::string& path = pol.path;
  // The policy's validator is the reader (Policy::from_json, as on every load: syntax, structure, specs,
  // with line/column and key paths). The schema check that follows is this verb's alone: it confirms
  // that the file also conforms to the published schema (docs for other tools), not a second gate on load.
  Policy p = load_policy(path);
  // Schema: an explicit --schema must exist; the default one is used when it is installed or in the source
  // tree (data_files.h).
  std::string schema_path = schema.empty() ? default_schema_path() : schema;
  bool schema_checked = false;
  if (!schema_path.empty()) {
    JsonSchema::load(schema_path).check(read_json_file(path), path);
    schema_checked = true;
  }
  std::string model_name = vm.count("model") ? c.model : p.model;
  ModelConfig cfg = vm.count("dataset") ? c.model_config() : p.config;
  auto model = make_model(model_name, cfg);
  check_policy(p, *model);  // model, layer set, shapes, facts, totals, specs constructible
  std::cout << "OK " << path << ": " << p.layers.size() << " layers of " << model_name << ", "
            << p.totals.weight_bytes << " weight bytes, " << p.totals.avg_weight_bits << " bits/weight"
            << (schema_checked ? ", schema valid" : ", schema not found (skipped)") << "\n";
  return 0;
}

int run_policy(const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError(std::string("missing subcommand (") + kSubs + "); see `autoqnn policy --help`");
  const std::string& sub = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (sub == "uniform") return policy_uniform(rest);
  if (sub == "show") return policy_show(rest);
  if (sub == "check") return policy_check(rest);
  if (sub == "--help" || sub == "-h") {
    std::cout << "usage: autoqnn policy <" << kSubs << "> [options]\n\n"
              << "  uniform  write a uniform baseline policy (--model, --weight, --act, --keep-first-last, --out)\n"
              << "  show     print a policy's per-layer table and totals\n"
              << "  check    validate a policy: JSON syntax, schema, layer set, shapes, specs, totals\n"
              << "\nformat: docs/policy.md, schema: configs/policy.schema.json\n";
    return 0;
  }
  throw UsageError("unknown subcommand '" + sub + "' (valid: " + kSubs + ")");
}

}  // namespace

AUTOQNN_VERB("policy", "write (uniform), show or check a quantization policy JSON", run_policy);

}  // namespace autoqnn::cli
