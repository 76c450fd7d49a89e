// autoqnn search: differentiable quantization-scheme search (QSS) under size budgets -> policy JSON.
#include <algorithm>
#include <iostream>
#include <map>

#include "autoqnn/adabits.h"
#include "autoqnn/runtime.h"
#include "cli.h"
#include "search/qss_qpl.h"
#include "search/search_driver.h"
#include "search/search_method.h"

namespace autoqnn::cli {
namespace {

std::string join_command(const std::vector<std::string>& args) {
  std::string s = "autoqnn search";
  for (const auto& a : args) {
    bool quote = a.find_first_of(" \t\"'$") != std::string::npos || a.empty();
    s += " " + (quote ? "'" + a + "'" : a);
  }
  return s;
}

// The method flags of every method (search_method.h), registered as strings: each method parses its own.
void add_method_flags(po::options_description& desc, std::map<std::string, std::string>& values) {
  for (const auto& f : search::all_method_flags()) {
    if (f.is_switch) {
      desc.add_options()(f.name.c_str(), po::bool_switch(), f.help.c_str());
      continue;
    }
    auto* v = po::value(&values[f.name]);
    if (!f.default_value.empty()) v->default_value(f.default_value);
    desc.add_options()(f.name.c_str(), v, f.help.c_str());
  }
}

// The method flags of this command line, checked against the method's own list.
search::FlagValues method_flags(const search::SearchMethod& m, const po::variables_map& vm) {
  search::FlagValues f;
  for (const auto& flag : search::all_method_flags()) {
    const bool declared = std::any_of(m.flags.begin(), m.flags.end(), [&](const auto& x) { return x.name == flag.name; });
    const bool given = vm.count(flag.name) && !vm[flag.name].defaulted() &&
                       (!flag.is_switch || vm[flag.name].as<bool>());
    if (given && !declared) {
      std::string owners;
      for (const auto& o : search::search_method_table())
        for (const auto& x : o.flags)
          if (x.name == flag.name) owners += (owners.empty() ? "" : ", ") + o.name;
      throw UsageError("--" + flag.name + " does not apply to --method " + m.name + " (it is an option of " + owners +
                       ")");
    }
    if (!declared) continue;
    if (given) f.given.insert(flag.name);
    f.values[flag.name] = flag.is_switch ? (given ? "1" : "0") : (vm.count(flag.name) ? vm[flag.name].as<std::string>() : "");
  }
  return f;
}

// Budget flags from the cost-kind table (autoqnn/cost_model.h): a new budget kind needs no change here.
struct BudgetValues {
  std::map<std::string, double> numbers;  // --budget-kib, --avg-bits, --act-budget-kib, --bops
  std::map<std::string, std::string> wa;  // --wa-bits "W,A"
};

void add_budget_flags(po::options_description& desc, BudgetValues& values) {
  for (const auto& k : cost_kinds()) {
    desc.add_options()(k.flag + 2, po::value(&values.numbers[k.flag]), k.help);
    if (k.per_weight_flag)
      desc.add_options()(k.per_weight_flag + 2, po::value(&values.numbers[k.per_weight_flag]),
                         "weight budget as an average bitwidth: B x #weights / 8 bytes");
    if (k.per_mac_flag)
      desc.add_options()(k.per_mac_flag + 2, po::value(&values.wa[k.per_mac_flag]),
                         "BOPs budget of uniform W-bit weights and A-bit activations on every layer: W,A "
                         "(= W x A x MACs)");
  }
}

// The budget flags given, in make_budgets' form (--wa-bits "W,A" -> W * A).
std::map<std::string, double> given_budgets(const BudgetValues& values, const po::variables_map& vm) {
  std::map<std::string, double> out;
  for (const auto& [flag, v] : values.numbers)
    if (vm.count(flag.substr(2))) out[flag] = v;
  for (const auto& [flag, text] : values.wa)
    if (vm.count(flag.substr(2))) out[flag] = search::parse_wa_bits(text);
  return out;
}

int cmd_search(const std::vector<std::string>& args) {
  CommonOptions common;
  search::SearchOptions so;
  std::string from_state, methods;
  CheckpointOptions ck;
  OutputOptions out;
  CalibBatchOptions calib(so.calib_batches);
  DistributedFlags distributed;
  std::map<std::string, std::string> method_values;
  BudgetValues budget_values;
  for (const auto& m : search::search_method_table()) methods += (methods.empty() ? "" : " | ") + m.name + " (" + m.summary + ")";

  po::options_description desc("search options");
  add_common_options(desc, common);
  ck.add(desc, "FP32 checkpoint to start from, or an AdaBits one (warm start; required unless --from-state)",
         Need::Optional);
  add_budget_flags(desc, budget_values);
  desc.add_options()
      ("method", po::value(&so.method)->default_value("qss"), ("search method: " + methods).c_str())
      ("space", po::value(&so.space_path)->default_value(so.space_path), "search space JSON")
      ("epochs", po::value(&so.epochs)->default_value(so.epochs), "search epochs (architecture updated)")
      ("warmup", po::value(&so.warmup)->default_value(so.warmup), "weight-only epochs before the search epochs");
  out.add(desc, "policy JSON to write (required)", Need::Optional)
      ("state", po::value(&so.state), "search-state file, saved each epoch (default: <out>.state.pt)")
      ("log", po::value(&so.log), "CSV log: per epoch, per layer, per candidate probability")
      ("resume", po::bool_switch(&so.resume), "continue the search saved in --state")
      ("from-state", po::value(&from_state),
       "re-derive a policy from a saved search state for the given budget (no search)")
      ("lr", po::value(&so.lr)->default_value(so.lr), "weight learning rate (SGD, cosine decay)")
      ("momentum", po::value(&so.momentum)->default_value(so.momentum), "SGD momentum")
      ("weight-decay", po::value(&so.weight_decay)->default_value(so.weight_decay), "weight decay (conv/linear weights)")
      ("arch-lr", po::value(&so.arch.lr)->default_value(so.arch.lr), "architecture learning rate (Adam)")
      ("arch-weight-decay", po::value(&so.arch.weight_decay)->default_value(so.arch.weight_decay),
       "architecture weight decay (towards uniform)")
      ("lambda-init", po::value(&so.penalty.lambda_init)->default_value(so.penalty.lambda_init),
       "initial penalty multiplier")
      ("lambda-rate", po::value(&so.penalty.eta)->default_value(so.penalty.eta),
       "multiplier adaptation rate per architecture step")
      ("budget-tol", po::value(&so.penalty.tol)->default_value(so.penalty.tol),
       "relative band around the weight budget inside which the multiplier decays")
      ("steps-per-epoch", po::value(&so.max_steps_per_epoch)->default_value(0),
       "cap on the steps of an epoch (0 = a full pass over the train split)")
      ("val-limit", po::value(&so.val_eval_limit)->default_value(0),
       "val images used for the per-epoch accuracy (0 = all)");
  calib.add(desc, "batches used to calibrate the candidate quantizers before the search");
  po::options_description method_desc("method options (each applies to the methods that declare it)");
  add_method_flags(method_desc, method_values);
  desc.add(method_desc);
  distributed.add(desc);
  po::variables_map vm;
  const std::string synopsis =
      "--model NAME --checkpoint FP.pt (--budget-kib X | --avg-bits B) --out policy.json [options]\n"
      "       autoqnn search --from-state STATE (--budget-kib X | --avg-bits B) --out policy.json";
  if (!parse("search", synopsis, desc, args, vm)) return 0;
  so.out = out.path;
  so.calib_batches = calib.batches;

  so.space_path = find_search_space(so.space_path);  // a path or name: cwd, installed, next to the exe, source tree
  try {
    so.budgets = given_budgets(budget_values, vm);
    // flag errors before any work (the model's size is not known yet); a front method (ilp --budgets) may
    // give its weight budgets through its own flags
    const bool front = search::search_method(so.method).budget_lists;
    if (!front || so.budgets.count("--avg-bits") || so.budgets.count("--budget-kib")) search::make_budgets(so.budgets, 1, 1);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (so.out.empty()) throw UsageError("--out is required (the policy JSON to write)");
  const std::string command = join_command(args);

  if (!from_state.empty()) {
    if (so.resume) throw UsageError("--from-state re-derives only; it cannot be combined with --resume");
    init_threads(common.threads);
    search::RederiveOptions ro;
    ro.state = from_state;
    ro.budgets = so.budgets;
    ro.out = so.out;
    ro.command_line = command;
    search::rederive_from_state(ro);
    return 0;
  }
  std::string checkpoint = ck.path;
  if (checkpoint.empty() && is_imported_model_name(common.model)) checkpoint = common.model;  // its own weights
  if (checkpoint.empty()) throw UsageError("--checkpoint is required (the FP32 model to search from)");
  if (!vm.count("model") || vm["model"].defaulted())
    log_info("search: --model not given, using '" + common.model + "'");
  if (so.epochs < 0) throw UsageError("--epochs must be >= 0");
  if (so.warmup < 0) throw UsageError("--warmup must be >= 0");
  calib.check();
  if (so.max_steps_per_epoch < 0) throw UsageError("--steps-per-epoch must be >= 0");

  try {
    const search::SearchMethod& method = search::search_method(so.method);
    so.strategy = method.options_from_flags(method_flags(method, vm));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (so.resume) {  // a typo in --state / --out must not silently start a new search
    const std::string st = so.state.empty() ? search::default_state_path(so.out) : so.state;
    if (!file_exists(st) && !file_exists(search::qss_stage_path(st, ".state.pt")))
      throw std::runtime_error("--resume: no search state at '" + st +
                               "' (nothing to resume; check --state / --out, or run without --resume to start)");
  }
  so.device = setup_runtime(common);
  distributed.init(common, so.device);  // the driver checks that every rank has the same settings
  check_same_command("search", vm);
  so.model = common.model;
  so.checkpoint = checkpoint;
  if (is_adabits(read_checkpoint_meta(checkpoint))) {  // AdaBits warm start (docs/adabits.md)
    so.checkpoint = search::default_state_path(so.out) + ".warmstart.pt";
    adabits_warm_start(checkpoint, so.checkpoint);
    dist::barrier();  // rank 0 wrote it; the others read it next
    log_info("search: warm start from AdaBits model '" + checkpoint + "' (latent weights, mean BatchNorm) via " +
             so.checkpoint);
  }
  so.data = common.data_options();
  so.batch_size = common.batch_size;
  so.seed = common.seed;
  so.command_line = command;
  search::run_method(so);
  return 0;
}

}  // namespace

AUTOQNN_VERB("search", "search a mixed-precision policy under a size budget (QSS, QPL, QSS+QPL, ILP)", cmd_search);

}  // namespace autoqnn::cli
