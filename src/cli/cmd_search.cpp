// autoqnn search: differentiable quantization-scheme search (QSS) under size budgets -> policy JSON.
#include <iostream>

#include "autoqnn/adabits.h"
#include "autoqnn/sensitivity.h"
#include "autoqnn/runtime.h"
#include "cli.h"
#include "search/qpl.h"
#include "search/qss.h"
#include "search/search_driver.h"
#include "search/sensitivity_prior.h"

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

int cmd_search(const std::vector<std::string>& args) {
  CommonOptions common;
  search::SearchOptions so;
  std::string checkpoint, sampling = "hard", tau_schedule = "exp", from_state, sens_csv;
  double sens_scale = 20.0;
  double budget_kib = 0, avg_bits = 0, tau_start = 5.0, tau_end = 0.1;
  bool all_act_paths = false, no_gumbel = false;
  // QPL (--method qpl | qss+qpl)
  std::string qpl_scheme, qpl_act = "fp32", qpl_policy;
  search::QplOptions qpl;
  double bit_lr = 0.05;

  po::options_description desc("search options");
  add_common_options(desc, common);
  desc.add_options()
      ("checkpoint", po::value(&checkpoint), "FP32 checkpoint to start from, or an AdaBits one (warm start; required unless --from-state)")
      ("budget-kib", po::value(&budget_kib), "weight budget in KiB (codes + scales/tables)")
      ("avg-bits", po::value(&avg_bits), "weight budget as an average bitwidth: B x #weights / 8 bytes")
      ("act-budget-kib", po::value(&so.act_budget_kib)->default_value(0),
       "activation footprint budget in KiB: the largest quantized input tensor per image (0 = none)")
      ("bops", po::value(&so.bops)->default_value(0), "BOPs budget per image: sum of MACs x wbits x abits (0 = none)")
      ("method", po::value(&so.method)->default_value("qss"),
       "search method: qss (schemes x bits) | qpl (learned bits of given schemes) | qss+qpl (QSS picks the "
       "schemes, then QPL learns their bits)")
      ("space", po::value(&so.space_path)->default_value(so.space_path), "search space JSON")
      ("epochs", po::value(&so.epochs)->default_value(so.epochs), "search epochs (architecture updated)")
      ("warmup", po::value(&so.warmup)->default_value(so.warmup), "weight-only epochs before the search epochs")
      ("out", po::value(&so.out), "policy JSON to write (required)")
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
      ("sampling", po::value(&sampling)->default_value(sampling), "hard (straight-through Gumbel, the sampled candidate per step) | soft (every candidate mixed)")
      ("tau-start", po::value(&tau_start)->default_value(tau_start), "Gumbel-softmax temperature at the start")
      ("tau-end", po::value(&tau_end)->default_value(tau_end), "temperature at the end of the search")
      ("tau-schedule", po::value(&tau_schedule)->default_value(tau_schedule), "exp | linear | constant")
      ("all-act-paths", po::bool_switch(&all_act_paths),
       "hard sampling: evaluate every act candidate in architecture steps (exact gradient, slower)")
      ("no-gumbel", po::bool_switch(&no_gumbel), "no Gumbel noise: mixing weights softmax(theta / tau)")
      ("lambda-init", po::value(&so.penalty.lambda_init)->default_value(so.penalty.lambda_init),
       "initial penalty multiplier")
      ("lambda-rate", po::value(&so.penalty.eta)->default_value(so.penalty.eta),
       "multiplier adaptation rate per architecture step")
      ("budget-tol", po::value(&so.penalty.tol)->default_value(so.penalty.tol),
       "relative band around the weight budget inside which the multiplier decays")
      ("calib-batches", po::value(&so.calib_batches)->default_value(so.calib_batches),
       "batches used to calibrate the candidate quantizers before the search")
      ("steps-per-epoch", po::value(&so.max_steps_per_epoch)->default_value(0),
       "cap on the steps of an epoch (0 = a full pass over the train split)")
      ("val-limit", po::value(&so.val_eval_limit)->default_value(0),
       "val images used for the per-epoch accuracy (0 = all)")
      ("init-from-sensitivity", po::value(&sens_csv),
       "qss / qss+qpl: initial architecture logits from an `autoqnn analyze` table (-K x accuracy drop)")
      ("sensitivity-scale", po::value(&sens_scale)->default_value(sens_scale),
       "K of --init-from-sensitivity: logit = -K x drop (drop as a fraction; 20: a 5-point drop -> -1)")
      ("qpl-scheme", po::value(&qpl_scheme),
       "qpl: weight scheme of every layer, its bits = the initial bitwidth (e.g. vecq:4)")
      ("qpl-act", po::value(&qpl_act)->default_value(qpl_act),
       "qpl: activation scheme of every layer (fp32 = not quantized; otherwise its bits are learned too)")
      ("qpl-policy", po::value(&qpl_policy), "qpl: take every layer's weight / act scheme (and initial bits) from this policy")
      ("bit-lr", po::value(&bit_lr)->default_value(bit_lr), "qpl: learning rate of the bitwidth parameters (Adam)")
      ("bits-min", po::value(&qpl.bits_min)->default_value(qpl.bits_min), "qpl: smallest weight bitwidth")
      ("bits-max", po::value(&qpl.bits_max)->default_value(qpl.bits_max), "qpl: largest weight bitwidth")
      ("act-bits-min", po::value(&qpl.act_bits_min)->default_value(qpl.act_bits_min), "qpl: smallest act bitwidth")
      ("act-bits-max", po::value(&qpl.act_bits_max)->default_value(qpl.act_bits_max), "qpl: largest act bitwidth")
      ("init-bits", po::value(&qpl.init_bits)->default_value(0),
       "qpl: initial weight bitwidth of every learned layer (0 = each scheme's own bits)");
  po::variables_map vm;
  const std::string synopsis =
      "--model NAME --checkpoint FP.pt (--budget-kib X | --avg-bits B) --out policy.json [options]\n"
      "       autoqnn search --from-state STATE (--budget-kib X | --avg-bits B) --out policy.json";
  if (!parse("search", synopsis, desc, args, vm)) return 0;

  std::optional<double> kib, bits;
  if (vm.count("budget-kib")) kib = budget_kib;
  if (vm.count("avg-bits")) bits = avg_bits;
  so.space_path = find_search_space(so.space_path);  // a path or name: cwd, installed, next to the exe, source tree
  if (kib && bits) throw UsageError("give either --budget-kib or --avg-bits, not both");
  if (!kib && !bits) throw UsageError("a weight budget is required: --budget-kib X or --avg-bits B");
  if (so.out.empty()) throw UsageError("--out is required (the policy JSON to write)");
  const std::string command = join_command(args);

  if (!from_state.empty()) {
    if (so.resume) throw UsageError("--from-state re-derives only; it cannot be combined with --resume");
    init_threads(common.threads);
    search::RederiveOptions ro;
    ro.state = from_state;
    ro.budget_kib = kib;
    ro.avg_bits = bits;
    ro.act_budget_kib = so.act_budget_kib;
    ro.bops = so.bops;
    ro.out = so.out;
    ro.command_line = command;
    search::rederive_from_state(ro);
    return 0;
  }
  if (checkpoint.empty()) throw UsageError("--checkpoint is required (the FP32 model to search from)");
  if (!vm.count("model") || vm["model"].defaulted())
    log_info("search: --model not given, using '" + common.model + "'");
  if (so.epochs < 0) throw UsageError("--epochs must be >= 0");
  if (so.warmup < 0) throw UsageError("--warmup must be >= 0");
  if (so.calib_batches < 0) throw UsageError("--calib-batches must be >= 0");
  if (so.max_steps_per_epoch < 0) throw UsageError("--steps-per-epoch must be >= 0");

  so.device = setup_runtime(common);
  so.model = common.model;
  so.checkpoint = checkpoint;
  if (is_adabits(read_checkpoint_meta(checkpoint))) {  // AdaBits warm start (docs/adabits.md)
    so.checkpoint = search::default_state_path(so.out) + ".warmstart.pt";
    adabits_warm_start(checkpoint, so.checkpoint);
    log_info("search: warm start from AdaBits model '" + checkpoint + "' (latent weights, mean BatchNorm) via " +
             so.checkpoint);
  }
  so.data = common.data_options();
  so.batch_size = common.batch_size;
  so.seed = common.seed;
  so.command_line = command;
  so.budget_kib = kib;
  so.avg_bits = bits;
  try {
    search::QssOptions q;
    q.sampling = search::parse_sampling(sampling);
    q.tau.start = tau_start;
    q.tau.end = tau_end;
    q.tau.kind = tau_schedule;
    q.tau.validate();
    q.all_act_paths = all_act_paths;
    q.gumbel = !no_gumbel;
    if (!sens_csv.empty()) {
      if (so.method == "qpl")
        throw std::invalid_argument("--init-from-sensitivity initialises QSS's logits: use --method qss or qss+qpl");
      q.theta_init = search::theta_prior_from_sensitivity(
          ptq::parse_sensitivity_csv(read_text_file(sens_csv), sens_csv), sens_scale, sens_csv);
      log_info("search: architecture prior from " + sens_csv + " (" + std::to_string(q.theta_init.size()) +
               " layers, scale " + std::to_string(sens_scale) + ")");
    } else if (!vm["sensitivity-scale"].defaulted()) {
      throw std::invalid_argument("--sensitivity-scale needs --init-from-sensitivity");
    }
    so.strategy = q.to_json();
    if (so.method == "qss" && (!qpl_scheme.empty() || !qpl_policy.empty()))
      throw std::invalid_argument("--qpl-scheme / --qpl-policy need --method qpl");
    if (so.method == "qpl" || so.method == "qss+qpl") {
      if (!(bit_lr > 0)) throw std::invalid_argument("--bit-lr must be positive");
      const bool given = !qpl_scheme.empty() || !qpl_policy.empty();
      if (so.method == "qss+qpl" && given)
        throw std::invalid_argument("--method qss+qpl takes the schemes from its QSS stage; drop --qpl-scheme / --qpl-policy");
      if (so.method == "qpl" && !given)
        throw std::invalid_argument("--method qpl needs the schemes: --qpl-scheme SPEC (every layer) or --qpl-policy P.json");
      if (!qpl_scheme.empty() && !qpl_policy.empty())
        throw std::invalid_argument("give either --qpl-scheme or --qpl-policy, not both");
      if (so.method == "qss+qpl" && !vm["qpl-act"].defaulted())
        throw std::invalid_argument("--method qss+qpl takes the act schemes from its QSS stage; drop --qpl-act");
      qpl.weight = qpl_scheme;
      qpl.act = qpl_act;
      if (!qpl_policy.empty()) {
        qpl.layers = search::qpl_layers_from_policy(load_policy(qpl_policy));
        qpl.source = "policy " + qpl_policy;
      } else if (!qpl_scheme.empty()) {
        qpl.source = "--qpl-scheme " + qpl_scheme + " --qpl-act " + qpl_act;
      }
      qpl.validate();
    }
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (so.method == "qss+qpl") {
    nlohmann::json qj = qpl.to_json();
    qj.erase("weight");
    qj.erase("layers");
    qj.erase("act");
    qj.erase("source");
    so.strategy = {{"qss", so.strategy}, {"qpl", qj}};
    search::ArchAdamOptions bits = so.arch;
    bits.lr = bit_lr;
    search::run_qss_qpl(so, bits);
    return 0;
  }
  if (so.method == "qpl") {
    so.strategy = qpl.to_json();
    so.arch.lr = bit_lr;  // the architecture optimiser of QPL is the bit optimiser
  }
  search::run_search(so);
  return 0;
}

}  // namespace

AUTOQNN_VERB("search", "search a mixed-precision policy under a size budget (QSS, QPL, QSS+QPL)", cmd_search);

}  // namespace autoqnn::cli
