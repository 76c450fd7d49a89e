#include "search/search_driver.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "autoqnn/checkpoint.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "search/qpl.h"
#include "search/qss.h"
#include "search/supernet.h"

namespace autoqnn::search {

using nlohmann::json;

// ---------------------------------------------------------------- strategies
std::vector<std::string> search_methods() { return {"qss", "qpl", "qss+qpl"}; }

std::unique_ptr<SearchStrategy> make_strategy(const std::string& method, ModelPtr model, const SearchSpace& space,
                                              const json& options) {
  if (method == "qss") return make_qss_strategy(std::move(model), space, options);
  if (method == "qpl") return make_qpl_strategy(std::move(model), options);
  if (method == "qss+qpl")
    throw std::invalid_argument("search method 'qss+qpl' runs two searches (run_qss_qpl), not one strategy");
  std::string v;
  for (const auto& m : search_methods()) v += (v.empty() ? "" : ", ") + m;
  throw std::invalid_argument("unknown search method '" + method + "' (valid: " + v + ")");
}

std::string default_state_path(const std::string& out) {
  std::string base = out;
  if (base.size() > 5 && base.substr(base.size() - 5) == ".json") base.resize(base.size() - 5);
  return base + ".state.pt";
}

namespace {

constexpr const char* kStateKind = "search-state";

// Everything saved in the state file besides the weight optimiser: the strategy's module, the
// architecture optimiser's moments and the penalty multipliers.
struct StateModule : torch::nn::Module {
  StateModule(std::shared_ptr<torch::nn::Module> net, std::shared_ptr<ArchAdam> adam) {
    register_module("net", std::move(net));
    register_module("arch_opt", std::move(adam));
    lambdas = register_buffer("lambdas", torch::ones({3}, torch::kFloat64));
  }
  Lambdas get_lambdas() const {
    auto l = lambdas.to(torch::kCPU);
    auto a = l.accessor<double, 1>();
    return {a[0], a[1], a[2]};
  }
  void set_lambdas(const Lambdas& l) {
    torch::NoGradGuard ng;
    lambdas.copy_(torch::tensor({l.weight, l.act, l.bops}, torch::kFloat64));
  }
  torch::Tensor lambdas;
};

ModelFactory factory_or_default(const ModelFactory& f) {
  if (f) return f;
  return [](const std::string& name, const ModelConfig& cfg) { return make_model(name, cfg); };
}

std::string fmtd(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

double cosine_lr(double base, double t) { return base * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, std::max(0.0, t)))); }

// Builds the policy of a choice on a fresh (unquantized) instance of the model and cross-checks the
// policy's own accounting against the derivation's.
Policy build_policy(SearchStrategy& strat, const ModelFactory& factory, const std::string& model_name,
                    const ModelConfig& cfg, const std::vector<int64_t>& choice, const Derivation& d,
                    const Budgets& budgets) {
  ModelPtr fresh = factory(model_name, cfg);
  Policy p = blank_policy(*fresh);
  for (const auto& [name, specs] : strat.layer_specs(choice)) {
    LayerPolicy* lp = p.find(name);
    if (!lp) throw std::logic_error("policy of model '" + model_name + "' has no layer '" + name + "'");
    lp->weight = specs.first;
    lp->act = specs.second;
  }
  update_totals(p);
  const auto& t = p.totals;
  if (static_cast<double>(t.weight_bytes) != d.cost.weight_bytes ||
      (budgets.has_bops() && std::abs(t.bops - d.cost.bops) > 1e-6 * std::max(1.0, d.cost.bops)) ||
      (budgets.has_act() && static_cast<double>(t.act_bytes) > d.cost.act_bytes)) {
    log_warn("search: the policy accounts " + std::to_string(t.weight_bytes) + " weight bytes / " +
             std::to_string(t.act_bytes) + " act bytes / " + fmtd("%.6g", t.bops) + " BOPs, the derivation " +
             fmtd("%.0f", d.cost.weight_bytes) + " / " + fmtd("%.0f", d.cost.act_bytes) + " / " +
             fmtd("%.6g", d.cost.bops));
  }
  Cost pc{static_cast<double>(t.weight_bytes), static_cast<double>(t.act_bytes), t.bops};
  if (!within(pc, budgets))
    throw std::logic_error("search: the derived policy exceeds the budget by the policy's own accounting (" +
                           format_kib(pc.weight_bytes) + "); please report this");
  return p;
}

void warn_if_uniform(const Derivation& d, const ChoiceProblem& prob) {
  if (!d.uniform) return;
  std::string label;
  for (size_t g = 0; g < prob.groups.size(); ++g)
    if (prob.groups[g].searched()) label = prob.groups[g].labels[static_cast<size_t>(d.choice[g])];
  log_warn("========================================================================");
  log_warn("DEGENERATE SEARCH: every searched layer got the same candidate (" + label + ").");
  log_warn("The result is uniform precision, not a mixed-precision policy. Check the budget (is it at the");
  log_warn("cost of one uniform setting?), search longer (--epochs), or lower --tau-end / raise --arch-lr.");
  log_warn("========================================================================");
}

json space_json(const SearchSpace& s, const std::string& path) {
  return {{"path", path}, {"name", s.name}, {"granularity", granularity_name(s.granularity)}, {"definition", s.raw}};
}

// The CSV log: one row per (epoch, layer, candidate) with the epoch's summary repeated (tidy format).
void write_csv(const std::string& path, const json& history) {
  std::ostringstream os;
  os << "epoch,phase,tau,lr,train_loss,train_top1,arch_loss,val_top1,exp_weight_kib,exp_avg_bits,exp_act_kib,"
        "exp_bops,entropy,lambda_w,lambda_a,lambda_b,layer,weight,act,prob\n";
  os.precision(8);
  for (const auto& h : history) {
    std::ostringstream head;
    head.precision(8);
    head << h["epoch"].get<int>() << "," << h["phase"].get<std::string>() << "," << h["tau"].get<double>() << ","
         << h["lr"].get<double>() << "," << h["train_loss"].get<double>() << "," << h["train_top1"].get<double>()
         << "," << h["arch_loss"].get<double>() << "," << h["val_top1"].get<double>() << ","
         << h["expected"]["weight_kib"].get<double>() << "," << h["expected"]["avg_weight_bits"].get<double>() << ","
         << h["expected"]["act_bytes"].get<double>() / 1024.0 << "," << h["expected"]["bops"].get<double>() << ","
         << h["entropy"].get<double>() << "," << h["lambda"]["weight"].get<double>() << ","
         << h["lambda"]["act"].get<double>() << "," << h["lambda"]["bops"].get<double>();
    const std::string hs = head.str();
    for (auto it = h["probabilities"].begin(); it != h["probabilities"].end(); ++it)
      for (const auto& c : it.value())
        os << hs << "," << it.key() << "," << c["weight"].get<std::string>() << "," << c["act"].get<std::string>()
           << "," << c["p"].get<double>() << "\n";
  }
  atomic_write_text(path, os.str());
}

// Options that must not change between a state and its --resume.
json resume_key(const SearchOptions& o, const SearchSpace& space, const json& strategy_cfg, const Budgets& b) {
  return {{"method", o.method},
          {"model", o.model},
          {"space", space.raw},
          {"seed", o.seed},
          {"batch_size", o.batch_size},
          {"epochs", o.epochs},
          {"warmup", o.warmup},
          {"strategy", strategy_cfg},
          {"lr", o.lr},
          {"momentum", o.momentum},
          {"weight_decay", o.weight_decay},
          {"arch", o.arch.to_json()},
          {"penalty", o.penalty.to_json()},
          {"budget_bytes", {b.weight_bytes, b.act_bytes, b.bops}},
          {"dataset", o.data.dataset},
          {"train_limit", o.data.train_limit},
          {"max_steps_per_epoch", o.max_steps_per_epoch}};
}

void check_resume_key(const json& saved, const json& now, const std::string& path) {
  std::string diff;
  for (auto it = now.begin(); it != now.end(); ++it)
    if (!saved.contains(it.key()) || saved[it.key()] != it.value()) diff += (diff.empty() ? "" : ", ") + it.key();
  if (!diff.empty())
    throw std::invalid_argument("--resume: the state " + path + " was made with different settings (" + diff +
                                "); rerun with the same options, or without --resume to start over");
}

int64_t count_correct(const torch::Tensor& logits, const torch::Tensor& y) {
  return logits.argmax(1).eq(y).sum().item<int64_t>();
}

}  // namespace

// ---------------------------------------------------------------- the search
SearchResult run_search(const SearchOptions& opt) {
  if (opt.model.empty()) throw std::invalid_argument("--model is required");
  if (opt.checkpoint.empty()) throw std::invalid_argument("--checkpoint (the FP32 starting point) is required");
  if (opt.out.empty()) throw std::invalid_argument("--out (the policy JSON to write) is required");
  if (opt.epochs < 0) throw std::invalid_argument("--epochs must be >= 0");
  if (opt.warmup < 0) throw std::invalid_argument("--warmup must be >= 0");
  if (opt.batch_size <= 0) throw std::invalid_argument("--batch-size must be positive");
  if (!(opt.lr > 0)) throw std::invalid_argument("--lr must be positive");
  if (!(opt.arch.lr > 0)) throw std::invalid_argument("--arch-lr must be positive");
  const ModelFactory factory = factory_or_default(opt.model_factory);
  const std::string state_path = opt.state.empty() ? default_state_path(opt.out) : opt.state;
  const torch::Device device = opt.device;
  seed_everything(opt.seed);

  SearchSpace space = SearchSpace::load(opt.space_path);

  CheckpointMeta ck = read_checkpoint_meta(opt.checkpoint);
  if (ck.model != opt.model)
    throw std::invalid_argument("checkpoint " + opt.checkpoint + " holds model '" + ck.model + "', not --model '" +
                                opt.model + "'");
  if (ck.kind != "fp32")
    throw std::invalid_argument("the search starts from an FP32 checkpoint; " + opt.checkpoint + " is a '" +
                                ck.kind + "' checkpoint");
  DatasetInfo info = dataset_info(opt.data.dataset);
  if (ck.config.in_channels != info.channels || ck.config.image_size != info.height ||
      ck.config.num_classes != info.num_classes)
    throw std::invalid_argument("checkpoint " + opt.checkpoint + " was made for " + std::to_string(ck.config.in_channels) +
                                "x" + std::to_string(ck.config.image_size) + " images / " +
                                std::to_string(ck.config.num_classes) + " classes, dataset '" + opt.data.dataset +
                                "' differs (--dataset)");
  if (!ck.dataset.empty() && ck.dataset != opt.data.dataset)
    log_warn("search: checkpoint trained on '" + ck.dataset + "', searching on '" + opt.data.dataset + "'");

  ModelPtr model = factory(opt.model, ck.config);
  load_checkpoint_weights(opt.checkpoint, *model);
  std::unique_ptr<SearchStrategy> strat = make_strategy(opt.method, model, space, opt.strategy);
  const int64_t N = strat->num_weights();
  Budgets budgets = make_budgets(opt.budget_kib, opt.avg_bits, opt.act_budget_kib, opt.bops, N);
  check_feasible(strat->choice_problem(), budgets);  // fail before any training
  log_info("search: " + opt.method + " on " + opt.model + ", space " + opt.space_path + " (" +
           granularity_name(space.granularity) + "), budget: " + budgets.describe(N));

  Splits splits = load_splits(opt.data);
  if (splits.train.size() == 0) throw std::invalid_argument("search: the train split is empty");
  if (splits.val.size() == 0)
    throw std::invalid_argument("search: the val split is empty (the architecture steps need it); raise --train-limit");

  auto adam = std::make_shared<ArchAdam>(strat->arch_parameters(), opt.arch);
  auto state = std::make_shared<StateModule>(strat->module(), adam);
  state->to(device);
  std::vector<torch::Tensor> weights = strat->weight_parameters(), decay, no_decay;
  for (auto& p : weights) (p.dim() > 1 ? decay : no_decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> pg;
  if (!decay.empty())
    pg.emplace_back(decay, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(opt.lr)
                                                                          .momentum(opt.momentum)
                                                                          .weight_decay(opt.weight_decay)));
  if (!no_decay.empty())
    pg.emplace_back(no_decay, std::make_unique<torch::optim::SGDOptions>(
                                  torch::optim::SGDOptions(opt.lr).momentum(opt.momentum).weight_decay(0)));
  if (pg.empty()) throw std::invalid_argument("search: the model has no trainable parameter");
  torch::optim::SGD sgd(std::move(pg), torch::optim::SGDOptions(opt.lr));

  const int total_epochs = opt.warmup + opt.epochs;
  const json rkey = resume_key(opt, space, strat->config_json(), budgets);
  int start_epoch = 0;
  json history = json::array();
  Lambdas lam{opt.penalty.lambda_init, opt.penalty.lambda_init, opt.penalty.lambda_init};

  const bool drop_last = splits.train.size() >= opt.batch_size;
  BatchIterator train_it(splits.train, opt.batch_size, /*shuffle=*/true, opt.seed, {}, drop_last);
  BatchIterator val_it(splits.val, opt.batch_size, true, mix_seed(opt.seed, 77), {},
                       splits.val.size() >= opt.batch_size);
  int64_t steps = train_it.num_batches();
  if (opt.max_steps_per_epoch > 0) steps = std::min(steps, opt.max_steps_per_epoch);
  if (steps <= 0) throw std::invalid_argument("search: no training batch (train split smaller than --batch-size?)");

  if (opt.resume && file_exists(state_path)) {
    CheckpointMeta sm = read_checkpoint_meta(state_path);
    if (sm.kind != kStateKind)
      throw std::invalid_argument("--resume: " + state_path + " is a '" + sm.kind + "' checkpoint, not a search state");
    check_resume_key(sm.extra.value("resume_key", json::object()), rkey, state_path);
    load_checkpoint_weights(state_path, *state);
    if (!load_checkpoint_optimizer(state_path, sgd))
      throw std::runtime_error("--resume: " + state_path + " holds no weight-optimizer state");
    start_epoch = static_cast<int>(sm.epoch);
    history = sm.extra.value("history", json::array());
    lam = state->get_lambdas();
    log_info("search: resuming from " + state_path + " after epoch " + std::to_string(start_epoch) + " of " +
             std::to_string(total_epochs));
  } else {
    if (opt.resume) log_info("search: no state at " + state_path + " yet; starting from the beginning");
    state->set_lambdas(lam);
    // Calibration: every candidate quantizer initialises from data (first batches of the train split).
    state->train();
    for (int64_t b = 0; b < opt.calib_batches; ++b) {
      int64_t lo = b * opt.batch_size;
      if (lo >= splits.train.size()) break;
      auto batch = splits.train.slice(lo, std::min(splits.train.size(), lo + opt.batch_size));
      strat->calibrate(batch.images.to(device), mix_seed(opt.seed, 1000 + static_cast<uint64_t>(b)));
    }
  }

  TensorDataset val_eval = opt.val_eval_limit > 0 ? splits.val.head(opt.val_eval_limit) : splits.val;
  const int64_t search_steps = static_cast<int64_t>(opt.epochs) * steps;
  double last_val = -1;

  for (int e = start_epoch; e < total_epochs; ++e) {
    const bool searching = e >= opt.warmup;
    auto t0 = std::chrono::steady_clock::now();
    train_it.start_epoch(e);
    int64_t val_cycle = 0;
    val_it.start_epoch(static_cast<int64_t>(e) * 100000);
    Progress bar((searching ? "search " : "warmup ") + std::to_string(e + 1) + "/" + std::to_string(total_epochs),
                 steps, opt.batch_size);
    state->train();
    double loss_sum = 0, arch_sum = 0, lr_now = opt.lr;
    int64_t seen = 0, correct = 0, arch_steps = 0;
    for (int64_t s = 0; s < steps; ++s) {
      torch::Tensor x, y;
      if (!train_it.next(x, y)) break;
      x = x.to(device);
      y = y.to(device);
      const int64_t global = static_cast<int64_t>(e) * steps + s;
      const double progress =
          searching && search_steps > 0
              ? static_cast<double>((e - opt.warmup) * steps + s) / static_cast<double>(search_steps)
              : 0.0;
      lr_now = cosine_lr(opt.lr, static_cast<double>(global) / static_cast<double>(total_epochs * steps));
      for (auto& g : sgd.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr_now);

      // ---- weight step (train split)
      strat->begin_step(searching ? Phase::Weights : Phase::Warmup, progress,
                        mix_seed(opt.seed, 2 * static_cast<uint64_t>(global)));
      auto logits = strat->forward(x);
      auto loss = torch::nn::functional::cross_entropy(logits, y);
      double lv = loss.item<double>();
      if (!std::isfinite(lv))
        throw std::runtime_error("search diverged (loss " + fmtd("%g", lv) + ") in epoch " + std::to_string(e + 1) +
                                 ", step " + std::to_string(s + 1) + "; try a lower --lr");
      sgd.zero_grad();
      loss.backward();
      sgd.step();
      loss_sum += lv * static_cast<double>(x.size(0));
      correct += count_correct(logits.detach(), y);
      seen += x.size(0);

      // ---- architecture step (val split), first order: the weights are held fixed
      if (searching) {
        torch::Tensor xv, yv;
        if (!val_it.next(xv, yv)) {
          val_it.start_epoch(static_cast<int64_t>(e) * 100000 + (++val_cycle));
          if (!val_it.next(xv, yv)) throw std::runtime_error("search: the val split yields no batch");
        }
        xv = xv.to(device);
        yv = yv.to(device);
        for (auto& p : weights) p.requires_grad_(false);
        strat->begin_step(Phase::Arch, progress, mix_seed(opt.seed, 2 * static_cast<uint64_t>(global) + 1));
        auto lv_logits = strat->forward(xv);
        auto ce = torch::nn::functional::cross_entropy(lv_logits, yv);
        ExpectedCost ec = strat->expected_cost();
        auto total = ce + cost_penalty(ec, budgets, lam).to(ce.scalar_type());
        adam->zero_grad();
        total.backward();
        adam->step();
        for (auto& p : weights) p.requires_grad_(true);
        adapt_lambdas(lam, ec.values(), budgets, opt.penalty);
        arch_sum += ce.item<double>();
        ++arch_steps;
      }
      if ((s + 1) % 10 == 0 || s + 1 == steps) {
        double ekib = 0;
        {
          torch::NoGradGuard ng;
          ekib = strat->expected_cost().values().weight_bytes / 1024.0;
        }
        bar.update(s + 1, {{"loss", loss_sum / std::max<int64_t>(seen, 1)}, {"E[KiB]", ekib}});
      }
    }

    // ---- end of epoch: validation of the argmax architecture, log, state
    strat->begin_eval();
    state->eval();
    EvalResult ev = evaluate(
        *state, [&](const torch::Tensor& in) { return strat->forward(in); }, val_eval, opt.batch_size, device);
    state->train();
    last_val = ev.top1;
    Cost ex;
    {
      torch::NoGradGuard ng;
      ex = strat->expected_cost().values();
    }
    double prog_end = searching && search_steps > 0
                          ? static_cast<double>((e + 1 - opt.warmup) * steps) / static_cast<double>(search_steps)
                          : 0.0;
    auto m = strat->metrics(prog_end);
    double tau = 0, entropy = 0;
    for (auto& [k, v] : m) {
      if (k == "tau") tau = v;
      if (k == "entropy") entropy = v;
    }
    std::vector<std::pair<std::string, double>> fin = {{"loss", loss_sum / std::max<int64_t>(seen, 1)},
                                                       {"val_top1", ev.top1},
                                                       {"E[KiB]", ex.weight_bytes / 1024.0}};
    for (auto& kv : m) fin.push_back(kv);
    bar.finish(fin);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back({{"epoch", e + 1},
                       {"phase", searching ? "search" : "warmup"},
                       {"tau", tau},
                       {"lr", lr_now},
                       {"train_loss", loss_sum / std::max<int64_t>(seen, 1)},
                       {"train_top1", static_cast<double>(correct) / std::max<int64_t>(seen, 1)},
                       {"arch_loss", arch_steps ? arch_sum / static_cast<double>(arch_steps) : 0.0},
                       {"val_top1", ev.top1},
                       {"val_loss", ev.loss},
                       {"expected", ex.to_json(N)},
                       {"entropy", entropy},
                       {"lambda", {{"weight", lam.weight}, {"act", lam.act}, {"bops", lam.bops}}},
                       {"seconds", secs},
                       {"probabilities", strat->probabilities_json()}});
    if (json lj = strat->learned_json(); !lj.is_null()) history.back()["learned"] = lj;

    state->set_lambdas(lam);
    CheckpointMeta sm;
    sm.kind = kStateKind;
    sm.model = opt.model;
    sm.config = ck.config;
    sm.dataset = opt.data.dataset;
    sm.epoch = e + 1;
    sm.extra = {{"method", opt.method},
                {"strategy", strat->config_json()},
                {"space", space_json(space, opt.space_path)},
                {"seed", opt.seed},
                {"epochs", opt.epochs},
                {"warmup", opt.warmup},
                {"checkpoint", opt.checkpoint},
                {"budget", budgets.to_json(N)},
                {"arch_optimizer", opt.arch.to_json()},
                {"penalty", opt.penalty.to_json()},
                {"command", opt.command_line},
                {"version", AUTOQNN_VERSION},
                {"resume_key", rkey},
                {"history", history}};
    save_checkpoint(state_path, *state, sm, &sgd);
    if (!opt.log.empty()) write_csv(opt.log, history);
    if (opt.stop_after_epoch > 0 && e + 1 == opt.stop_after_epoch && e + 1 < total_epochs) {
      log_info("search: stopping after epoch " + std::to_string(e + 1) + " as asked (state " + state_path + ")");
      SearchResult r;
      r.epochs_done = e + 1;
      r.stopped = true;
      r.expected = ex;
      r.val_top1 = ev.top1;
      return r;
    }
  }

  // ---- derivation
  if (!history.empty()) last_val = history.back().value("val_top1", -1.0);
  ChoiceProblem problem = strat->choice_problem();
  Derivation d = derive(problem, budgets);
  warn_if_uniform(d, problem);
  Policy policy = build_policy(*strat, factory, opt.model, ck.config, d.choice, d, budgets);
  Cost ex;
  {
    torch::NoGradGuard ng;
    ex = strat->expected_cost().values();
  }
  policy.search = {{"method", opt.method},
                   {"version", AUTOQNN_VERSION},
                   {"command", opt.command_line},
                   {"seed", opt.seed},
                   {"checkpoint", opt.checkpoint},
                   {"dataset", opt.data.dataset},
                   {"space", space_json(space, opt.space_path)},
                   {"budget", budgets.to_json(N)},
                   {"epochs", opt.epochs},
                   {"warmup", opt.warmup},
                   {"strategy", strat->config_json()},
                   {"optimizer", {{"weights", {{"lr", opt.lr}, {"momentum", opt.momentum},
                                               {"weight_decay", opt.weight_decay}, {"schedule", "cosine"}}},
                                  {"arch", opt.arch.to_json()},
                                  {"penalty", opt.penalty.to_json()}}},
                   {"expected_cost", ex.to_json(N)},
                   {"val_top1_argmax", last_val},
                   {"derivation", d.to_json(problem)},
                   {"probabilities", strat->probabilities_json()},
                   {"state", state_path}};
  if (json lj = strat->learned_json(); !lj.is_null()) policy.search["learned_bits"] = lj;
  save_policy(opt.out, policy);
  log_info("search: policy " + opt.out + ": " + format_kib(d.cost.weight_bytes) +
           fmtd(" (%.3f bits/weight)", 8.0 * d.cost.weight_bytes / static_cast<double>(N)) + ", budget " +
           format_kib(budgets.weight_bytes) + "; E[size] " + format_kib(ex.weight_bytes) + "; " +
           std::to_string(d.downgrades) + " repair downgrade(s), " + std::to_string(d.upgrades) + " refill upgrade(s)");
  SearchResult r;
  r.policy = std::move(policy);
  r.derivation = d;
  r.expected = ex;
  r.val_top1 = last_val;
  r.epochs_done = total_epochs;
  return r;
}

// ---------------------------------------------------------------- re-derivation
SearchResult rederive_from_state(const RederiveOptions& opt) {
  if (opt.state.empty()) throw std::invalid_argument("--from-state needs a search-state file");
  if (opt.out.empty()) throw std::invalid_argument("--out (the policy JSON to write) is required");
  const ModelFactory factory = factory_or_default(opt.model_factory);
  CheckpointMeta sm = read_checkpoint_meta(opt.state);
  if (sm.kind != kStateKind)
    throw std::invalid_argument("--from-state: " + opt.state + " is a '" + sm.kind + "' checkpoint, not a search state");
  const json& ex = sm.extra;
  for (const char* k : {"method", "strategy", "space", "arch_optimizer"})
    if (!ex.contains(k)) throw std::invalid_argument("--from-state: " + opt.state + " lacks '" + k + "' (corrupt state?)");
  SearchSpace space = SearchSpace::from_json(ex["space"]["definition"], opt.state + " (space)");
  ModelPtr model = factory(sm.model, sm.config);
  std::unique_ptr<SearchStrategy> strat = make_strategy(ex["method"].get<std::string>(), model, space, ex["strategy"]);
  ArchAdamOptions ao;  // shapes only: the moments are loaded, never used
  auto adam = std::make_shared<ArchAdam>(strat->arch_parameters(), ao);
  auto state = std::make_shared<StateModule>(strat->module(), adam);
  load_checkpoint_weights(opt.state, *state);
  const int total = ex.value("epochs", 0) + ex.value("warmup", 0);
  if (sm.epoch < total)
    log_warn("--from-state: " + opt.state + " is from epoch " + std::to_string(sm.epoch) + " of " +
             std::to_string(total) + " (an unfinished search)");

  const int64_t N = strat->num_weights();
  Budgets budgets = make_budgets(opt.budget_kib, opt.avg_bits, opt.act_budget_kib, opt.bops, N);
  ChoiceProblem problem = strat->choice_problem();
  Derivation d = derive(problem, budgets);
  warn_if_uniform(d, problem);
  Policy policy = build_policy(*strat, factory, sm.model, sm.config, d.choice, d, budgets);
  Cost e;
  {
    torch::NoGradGuard ng;
    e = strat->expected_cost().values();
  }
  json prov = {{"method", ex["method"]},
               {"version", AUTOQNN_VERSION},
               {"command", opt.command_line},
               {"seed", ex.value("seed", json(nullptr))},
               {"checkpoint", ex.value("checkpoint", json(nullptr))},
               {"dataset", sm.dataset},
               {"space", ex["space"]},
               {"budget", budgets.to_json(N)},
               {"search_budget", ex.value("budget", json(nullptr))},
               {"epochs", ex.value("epochs", 0)},
               {"warmup", ex.value("warmup", 0)},
               {"strategy", ex["strategy"]},
               {"rederived_from_state", opt.state},
               {"state_epoch", sm.epoch},
               {"search_command", ex.value("command", "")},
               {"expected_cost", e.to_json(N)},
               {"derivation", d.to_json(problem)},
               {"probabilities", strat->probabilities_json()}};
  if (json lj = strat->learned_json(); !lj.is_null()) prov["learned_bits"] = lj;
  policy.search = prov;
  save_policy(opt.out, policy);
  log_info("search: re-derived " + opt.out + " from " + opt.state + ": " + format_kib(d.cost.weight_bytes) +
           " for a budget of " + format_kib(budgets.weight_bytes) + " (" + std::to_string(d.downgrades) +
           " downgrade(s), " + std::to_string(d.upgrades) + " upgrade(s))");
  SearchResult r;
  r.policy = std::move(policy);
  r.derivation = d;
  r.expected = e;
  r.epochs_done = static_cast<int>(sm.epoch);
  return r;
}

}  // namespace autoqnn::search
