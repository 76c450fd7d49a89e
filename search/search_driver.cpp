#include "search/search_driver.h"

#include <chrono>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "autoqnn/checkpoint.h"
#include "autoqnn/checkpoint_classes.h"
#include "autoqnn/data_folder.h"
#include "autoqnn/distributed.h"
#include "autoqnn/number_text.h"
#include "autoqnn/runtime.h"
#include "autoqnn/switchable_bn.h"
#include "autoqnn/trainer.h"
#include "search/search_method.h"
#include "search/supernet.h"

namespace autoqnn::search {

using nlohmann::json;

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
    lambdas = register_buffer("lambdas", torch::ones({kNumCostKinds}, torch::kFloat64));
  }
  // The multipliers live in the budget table; the buffer holds them by cost kind (absent kinds: 1).
  void get_multipliers(Budgets& b) const {
    auto l = lambdas.to(torch::kCPU);
    auto a = l.accessor<double, 1>();
    for (auto& c : b.constraints) c.multiplier = a[static_cast<int64_t>(c.kind)];
  }
  void set_multipliers(const Budgets& b) {
    torch::NoGradGuard ng;
    std::vector<double> v(kNumCostKinds, 1.0);
    for (const auto& c : b.constraints) v[static_cast<size_t>(c.kind)] = c.multiplier;
    lambdas.copy_(torch::tensor(v, torch::kFloat64));
  }
  torch::Tensor lambdas;
};

ModelFactory factory_or_default(const ModelFactory& f) {
  if (f) return f;
  return [](const std::string& name, const ModelConfig& cfg) { return make_model(name, cfg); };
}

double cosine_lr(double base, double t) { return base * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, std::max(0.0, t)))); }

// Builds the policy of a choice on a fresh (unquantized) instance of the model and cross-checks the
// policy's own accounting against the derivation's (both come from the one cost model).
Policy build_policy(SearchStrategy& strat, const FinishStep& f, const Derivation& d) {
  ModelPtr fresh = f.factory(f.model, f.config);
  Policy p = blank_policy(*fresh);
  for (const auto& [name, specs] : strat.layer_specs(d.choice)) {
    LayerPolicy* lp = p.find(name);
    if (!lp) throw std::logic_error("policy of model '" + f.model + "' has no layer '" + name + "'");
    lp->weight = specs.first;
    lp->act = specs.second;
  }
  update_totals(p);
  const Cost pc{static_cast<double>(p.totals.weight_bytes), static_cast<double>(p.totals.act_bytes), p.totals.bops};
  for (const auto& k : cost_kinds())
    if (std::abs(pc.at(k.kind) - d.cost.at(k.kind)) > 1e-6 * std::max(1.0, d.cost.at(k.kind)))
      log_warn(std::string("search: the policy accounts ") + k.label + " cost " + format_number("%.6g", pc.at(k.kind)) +
               ", the derivation " + format_number("%.6g", d.cost.at(k.kind)));
  if (!within(pc, f.budgets))
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
        "exp_bops,entropy";
  for (const auto& k : cost_kinds()) os << ",lambda_" << k.key;
  os << ",layer,weight,act,prob\n";
  os.precision(8);
  for (const auto& h : history) {
    std::ostringstream head;
    head.precision(8);
    head << h["epoch"].get<int>() << "," << h["phase"].get<std::string>() << "," << h["tau"].get<double>() << ","
         << h["lr"].get<double>() << "," << h["train_loss"].get<double>() << "," << h["train_top1"].get<double>()
         << "," << h["arch_loss"].get<double>() << "," << h["val_top1"].get<double>() << ","
         << h["expected"]["weight_kib"].get<double>() << "," << h["expected"]["avg_weight_bits"].get<double>() << ","
         << h["expected"]["act_bytes"].get<double>() / 1024.0 << "," << h["expected"]["bops"].get<double>() << ","
         << h["entropy"].get<double>();
    for (const auto& k : cost_kinds()) {
      const json& l = h["lambda"].value(k.key, json());
      head << ",";
      if (l.is_number()) head << l.get<double>();
    }
    const std::string hs = head.str();
    for (auto it = h["probabilities"].begin(); it != h["probabilities"].end(); ++it)
      for (const auto& c : it.value())
        os << hs << "," << it.key() << "," << c["weight"].get<std::string>() << "," << c["act"].get<std::string>()
           << "," << c["p"].get<double>() << "\n";
  }
  atomic_write_text(path, os.str());
}

// Options that must not change between a state and its --resume.
json resume_key(const SearchOptions& o, const SearchSpace& space, const json& strategy_cfg, const Budgets& b,
               const ArchAdamOptions& arch) {
  json limits = json::array();
  for (const auto& k : cost_kinds()) limits.push_back(b.limit(k.kind));
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
          {"arch", arch.to_json()},
          {"penalty", o.penalty.to_json()},
          {"budget_bytes", limits},
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

// The weight optimiser: SGD, weight decay on conv/linear weights only.
torch::optim::SGD make_weight_optimizer(const SearchOptions& opt, const std::vector<torch::Tensor>& weights) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : weights) (p.dim() > 1 ? decay : no_decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> pg;
  if (!decay.empty())
    pg.emplace_back(decay, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(opt.lr)
                                                                          .momentum(opt.momentum)
                                                                          .weight_decay(opt.weight_decay)));
  if (!no_decay.empty())
    pg.emplace_back(no_decay, std::make_unique<torch::optim::SGDOptions>(
                                  torch::optim::SGDOptions(opt.lr).momentum(opt.momentum).weight_decay(0)));
  if (pg.empty()) throw std::invalid_argument("search: the model has no trainable parameter");
  return torch::optim::SGD(std::move(pg), torch::optim::SGDOptions(opt.lr));
}

// The FP32 checkpoint the search starts from, checked against --model and --dataset.
CheckpointMeta checked_start(const SearchOptions& opt) {
  CheckpointMeta ck = read_checkpoint_meta(opt.checkpoint);
  DatasetInfo info = dataset_info(opt.data.dataset);
  if (ck.config.in_channels == 0) ck.config = ModelConfig{info.channels, info.height, info.num_classes};  // TorchScript
  const bool imported = is_imported_model_name(opt.model);  // its path, or a zoo checkpoint with the same layers
  if (ck.model != opt.model && !imported)
    throw std::invalid_argument("checkpoint " + opt.checkpoint + " holds model '" + ck.model + "', not --model '" +
                                opt.model + "'");
  if (ck.kind != "fp32")
    throw std::invalid_argument("the search starts from an FP32 checkpoint; " + opt.checkpoint + " is a '" +
                                ck.kind + "' checkpoint");
  if (ck.config.in_channels != info.channels || ck.config.image_size != info.height ||
      ck.config.num_classes != info.num_classes)
    throw std::invalid_argument("checkpoint " + opt.checkpoint + " was made for " + std::to_string(ck.config.in_channels) +
                                "x" + std::to_string(ck.config.image_size) + " images / " +
                                std::to_string(ck.config.num_classes) + " classes, dataset '" + opt.data.dataset +
                                "' differs (--dataset)");
  if (is_folder_dataset(opt.data.dataset)) {  // a checkpoint of a folder data set must know the same classes
    const auto had = read_checkpoint_classes(opt.checkpoint), have = folder_class_names(opt.data.dataset);
    if (!had.empty() && had != have)
      throw std::invalid_argument("checkpoint " + opt.checkpoint + " was trained on other classes (" +
                                  std::to_string(had.size()) + ", first '" + had.front() + "') than dataset '" +
                                  opt.data.dataset + "' has (" + std::to_string(have.size()) + ", first '" +
                                  have.front() + "')");
  }
  if (!ck.dataset.empty() && ck.dataset != opt.data.dataset)
    log_warn("search: checkpoint trained on '" + ck.dataset + "', searching on '" + opt.data.dataset + "'");
  return ck;
}

void check_search_options(const SearchOptions& opt, const ArchAdamOptions& arch) {
  if (opt.model.empty()) throw std::invalid_argument("--model is required");
  if (opt.checkpoint.empty()) throw std::invalid_argument("--checkpoint (the FP32 starting point) is required");
  if (opt.out.empty()) throw std::invalid_argument("--out (the policy JSON to write) is required");
  if (opt.epochs < 0) throw std::invalid_argument("--epochs must be >= 0");
  if (opt.warmup < 0) throw std::invalid_argument("--warmup must be >= 0");
  if (opt.batch_size <= 0) throw std::invalid_argument("--batch-size must be positive");
  if (!(opt.lr > 0)) throw std::invalid_argument("--lr must be positive");
  if (!(arch.lr > 0)) throw std::invalid_argument("--arch-lr must be positive");
}

// The multipliers of the penalty, by cost kind, for the history (null = no budget of that kind).
json multipliers_json(const Budgets& b) {
  json j = json::object();
  for (const auto& k : cost_kinds()) j[k.key] = b.has(k.kind) ? json(b.find(k.kind)->multiplier) : json();
  return j;
}

double metric(const std::vector<std::pair<std::string, double>>& m, const std::string& key) {
  for (const auto& [k, v] : m)
    if (k == key) return v;
  return 0.0;
}

}  // namespace

// ---------------------------------------------------------------- the search
SearchResult run_search(const SearchOptions& opt) {
  const SearchMethod& method = search_method(opt.method);
  if (!method.make)
    throw std::invalid_argument("search method '" + opt.method + "' runs several searches: use run_method");
  // The architecture optimiser as run: a method may set its own learning rate (QPL's --bit-lr).
  ArchAdamOptions arch = opt.arch;
  if (opt.strategy)
    if (auto lr = opt.strategy->arch_lr()) arch.lr = *lr;
  check_search_options(opt, arch);
  const ModelFactory factory = factory_or_default(opt.model_factory);
  const std::string state_path = opt.state.empty() ? default_state_path(opt.out) : opt.state;
  const torch::Device device = opt.device;
  seed_everything(opt.seed);

  SearchSpace space = SearchSpace::load(find_search_space(opt.space_path));  // a path or a shipped name
  CheckpointMeta ck = checked_start(opt);
  ModelPtr model = factory(opt.model, ck.config);
  load_checkpoint_weights(opt.checkpoint, *model);
  const int64_t macs = model_macs(*model);  // before the strategy wraps the layers
  if (space.act_by_input_sign && space.input_one_sided.empty())
    measure_input_signs(space, *model, load_splits(opt.data).train, opt.seed);
  std::unique_ptr<SearchStrategy> strat = method.make(model, space, opt.strategy.get());
  const int64_t N = strat->num_weights();
  Budgets budgets = make_budgets(opt.budgets, N, macs);
  check_feasible(strat->choice_problem(), budgets);  // fail before any training
  log_info("search: " + opt.method + " on " + opt.model + ", space " + opt.space_path + " (" +
           granularity_name(space.granularity) + "), budget: " + budgets.describe(N));

  Splits splits = load_splits(opt.data);
  if (splits.train.size() == 0) throw std::invalid_argument("search: the train split is empty");
  if (splits.val.size() == 0)
    throw std::invalid_argument("search: the val split is empty (the architecture steps need it); raise --train-limit");

  auto adam = std::make_shared<ArchAdam>(strat->arch_parameters(), arch);
  auto state = std::make_shared<StateModule>(strat->module(), adam);
  state->to(device);
  std::vector<torch::Tensor> weights = strat->weight_parameters();
  torch::optim::SGD sgd = make_weight_optimizer(opt, weights);

  const int total_epochs = opt.warmup + opt.epochs;
  const json rkey = resume_key(opt, space, strat->config_json(), budgets, arch);
  int start_epoch = 0;
  json history = json::array();
  for (auto& c : budgets.constraints) c.multiplier = opt.penalty.lambda_init;

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
    state->get_multipliers(budgets);
    log_info("search: resuming from " + state_path + " after epoch " + std::to_string(start_epoch) + " of " +
             std::to_string(total_epochs));
  } else {
    if (opt.resume) log_info("search: no state at " + state_path + " yet; starting from the beginning");
    state->set_multipliers(budgets);
    // Calibration: every candidate quantizer initialises from data (first batches of the train split).
    state->train();
    for (int64_t b = 0; b < opt.calib_batches; ++b) {
      int64_t lo = b * opt.batch_size;
      if (lo >= splits.train.size()) break;
      auto batch = splits.train.slice(lo, std::min(splits.train.size(), lo + opt.batch_size));
      strat->calibrate(batch.images.to(device), mix_seed(opt.seed, 1000 + static_cast<uint64_t>(b)));
    }
  }

  // Data parallel (distributed.h): the same settings on every rank, rank 0's replica everywhere,
  // global-batch BatchNorm, each rank a slice of every train / val batch, weight and architecture gradients
  // (theta, bit logits) averaged over the global batch. Calibration above used the same whole batches on
  // every rank, so it needs no reduction.
  std::unique_ptr<dist::GradientAverager> weight_avg, arch_avg;
  if (dist::active()) {
    dist::check_same_settings("search", rkey);
    dist::broadcast_module(*state);
    set_sync_batchnorm(*state, true);
    train_it.set_shard(dist::rank(), dist::world_size());
    val_it.set_shard(dist::rank(), dist::world_size());
    // the weight step's all-reduce overlapped with its backward (the sampled candidates, hence the graph,
    // are the same on every rank: the step seed is); the architecture step's is small and follows backward
    weight_avg = std::make_unique<dist::GradientAverager>(weights, 256 << 10, /*overlap=*/true);
    arch_avg = std::make_unique<dist::GradientAverager>(strat->arch_parameters());
  }

  TensorDataset val_eval = opt.val_eval_limit > 0 ? splits.val.head(opt.val_eval_limit) : splits.val;
  const int64_t search_steps = static_cast<int64_t>(opt.epochs) * steps;
  double last_val = -1;
  const json space_record = space_json(space, opt.space_path);

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
        throw std::runtime_error("search diverged (loss " + format_number("%g", lv) + ") in epoch " + std::to_string(e + 1) +
                                 ", step " + std::to_string(s + 1) + "; try a lower --lr");
      sgd.zero_grad();
      const double share = static_cast<double>(x.size(0)) / static_cast<double>(train_it.global_batch_size());
      if (weight_avg) weight_avg->arm(share);
      loss.backward();
      if (weight_avg) weight_avg->average(share);
      sgd.step();
      // A step can overflow the weights while the loss was still finite (it grows by orders of magnitude
      // first); the next forward would then fail inside a quantizer with a message about NaN inputs.
      // One reduction and one host sync per step (not one per tensor: this runs every step, also on a GPU).
      std::vector<torch::Tensor> finite;
      finite.reserve(weights.size());
      for (const auto& p : weights) finite.push_back(torch::isfinite(p).all());
      if (!finite.empty() && !torch::stack(finite).all().item<bool>())
        throw std::runtime_error("search diverged: the weights are no longer finite after step " + std::to_string(s + 1) +
                                 " of epoch " + std::to_string(e + 1) + " (loss before it " + format_number("%g", lv) +
                                 "); try a lower --lr");
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
        auto total = ce + cost_penalty(ec, budgets).to(ce.scalar_type());
        adam->zero_grad();
        total.backward();
        // The penalty's gradient is the same on every rank; the weights (shares) sum to 1, so it survives.
        if (arch_avg) arch_avg->average(static_cast<double>(xv.size(0)) / static_cast<double>(val_it.global_batch_size()));
        adam->step();
        for (auto& p : weights) p.requires_grad_(true);
        adapt_multipliers(budgets, ec.values(), opt.penalty);
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
    if (dist::active()) {  // the epoch's figures over every rank's samples; buffers re-aligned to rank 0's
      auto sums = torch::tensor({loss_sum, static_cast<double>(correct), static_cast<double>(seen), arch_sum},
                                torch::kFloat64);
      dist::all_reduce_sum(sums);
      loss_sum = sums[0].item<double>();
      correct = std::llround(sums[1].item<double>());
      seen = std::llround(sums[2].item<double>());
      arch_sum = sums[3].item<double>() / dist::world_size();
      dist::average_buffers(*state);  // --dist-bn local: the ranks' running statistics differ until here
      dist::check_same_buffers(*state, "at the end of epoch " + std::to_string(e + 1));
      dist::broadcast_buffers(*state);
    }
    strat->begin_eval();
    state->eval();
    EvalResult ev = evaluate_sharded(
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
    std::vector<std::pair<std::string, double>> fin = {{"loss", loss_sum / std::max<int64_t>(seen, 1)},
                                                       {"val_top1", ev.top1},
                                                       {"E[KiB]", ex.weight_bytes / 1024.0}};
    for (auto& kv : m) fin.push_back(kv);
    bar.finish(fin);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back({{"epoch", e + 1},
                       {"phase", searching ? "search" : "warmup"},
                       {"tau", metric(m, "tau")},
                       {"lr", lr_now},
                       {"train_loss", loss_sum / std::max<int64_t>(seen, 1)},
                       {"train_top1", static_cast<double>(correct) / std::max<int64_t>(seen, 1)},
                       {"arch_loss", arch_steps ? arch_sum / static_cast<double>(arch_steps) : 0.0},
                       {"val_top1", ev.top1},
                       {"val_loss", ev.loss},
                       {"expected", ex.to_json(N)},
                       {"entropy", metric(m, "entropy")},
                       {"lambda", multipliers_json(budgets)},
                       {"seconds", secs},
                       {"probabilities", strat->probabilities_json()}});
    if (json lj = strat->learned_json(); !lj.is_null()) history.back()["learned"] = lj;

    state->set_multipliers(budgets);
    CheckpointMeta sm;
    sm.kind = kStateKind;
    sm.model = opt.model;
    sm.config = ck.config;
    sm.dataset = opt.data.dataset;
    sm.epoch = e + 1;
    sm.extra = {{"method", opt.method},
                {"strategy", strat->config_json()},
                {"space", space_record},
                {"seed", opt.seed},
                {"epochs", opt.epochs},
                {"warmup", opt.warmup},
                {"checkpoint", opt.checkpoint},
                {"budget", budgets.to_json(N)},
                {"arch_optimizer", arch.to_json()},
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

  if (!history.empty()) last_val = history.back().value("val_top1", -1.0);
  FinishStep f{factory, opt.model, ck.config, budgets, json::object(), opt.out, "searched"};
  f.provenance = {{"method", opt.method},
                  {"version", AUTOQNN_VERSION},
                  {"command", opt.command_line},
                  {"seed", opt.seed},
                  {"checkpoint", opt.checkpoint},
                  {"dataset", opt.data.dataset},
                  {"space", space_record},
                  {"epochs", opt.epochs},
                  {"warmup", opt.warmup},
                  {"strategy", strat->config_json()},
                  {"optimizer", {{"weights", {{"lr", opt.lr}, {"momentum", opt.momentum},
                                              {"weight_decay", opt.weight_decay}, {"schedule", "cosine"}}},
                                 {"arch", arch.to_json()},
                                 {"penalty", opt.penalty.to_json()}}},
                  {"val_top1_argmax", last_val},
                  {"state", state_path}};
  if (is_folder_dataset(opt.data.dataset)) f.provenance["classes"] = folder_class_names(opt.data.dataset);
  SearchResult r = finish_search(*strat, f);
  r.val_top1 = last_val;
  r.epochs_done = total_epochs;
  return r;
}

// ---------------------------------------------------------------- the finish step
SearchResult finish_search(SearchStrategy& strat, const FinishStep& f) {
  const int64_t N = strat.num_weights();
  ChoiceProblem problem = strat.choice_problem();
  Derivation d = derive(problem, f.budgets);
  warn_if_uniform(d, problem);
  Policy policy = build_policy(strat, f, d);
  Cost ex;
  {
    torch::NoGradGuard ng;
    ex = strat.expected_cost().values();
  }
  json prov = f.provenance;
  prov["budget"] = f.budgets.to_json(N);
  prov["expected_cost"] = ex.to_json(N);
  prov["derivation"] = d.to_json(problem);
  prov["probabilities"] = strat.probabilities_json();
  if (json lj = strat.learned_json(); !lj.is_null()) prov["learned_bits"] = lj;
  save_searched_policy(f.out, policy, prov);
  log_info("search: " + f.how + ": " + format_kib(d.cost.weight_bytes) +
           format_number(" (%.3f bits/weight)", avg_bits(d.cost.weight_bytes, N)) + " for a budget of " +
           format_kib(f.budgets.limit(CostKind::WeightBytes)) + "; E[size] " + format_kib(ex.weight_bytes) + "; " +
           std::to_string(d.downgrades) + " repair downgrade(s), " + std::to_string(d.upgrades) +
           " refill upgrade(s), " + std::to_string(d.fills) + " budget-fill upgrade(s)");
  SearchResult r;
  r.policy = std::move(policy);
  r.derivation = d;
  r.expected = ex;
  return r;
}

void save_searched_policy(const std::string& out, Policy& policy, json provenance) {
  {  // data parallel: every rank must hold the policy rank 0 writes
    std::string specs;
    for (const auto& l : policy.layers) specs += l.name + "=" + l.weight.to_string() + "/" + l.act.to_string() + ";";
    dist::check_same_everywhere("policies", specs);
  }
  policy.search = std::move(provenance);
  save_policy(out, policy);
  log_info("search: policy " + out + " (" + policy.search.value("method", "?") + "): " +
           format_kib(static_cast<double>(policy.totals.weight_bytes)) + format_number(" (%.3f bits/weight)",
                                                                           policy.totals.avg_weight_bits));
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
  const int64_t macs = model_macs(*model);  // before the strategy wraps the layers
  const SearchMethod& method = search_method(ex["method"].get<std::string>());
  StrategyOptionsPtr options = method.options_from_json(ex["strategy"]);
  std::unique_ptr<SearchStrategy> strat = make_strategy(method.name, model, space, options.get());
  ArchAdamOptions ao;  // shapes only: the moments are loaded, never used
  auto adam = std::make_shared<ArchAdam>(strat->arch_parameters(), ao);
  auto state = std::make_shared<StateModule>(strat->module(), adam);
  load_checkpoint_weights(opt.state, *state);
  const int total = ex.value("epochs", 0) + ex.value("warmup", 0);
  if (sm.epoch < total)
    log_warn("--from-state: " + opt.state + " is from epoch " + std::to_string(sm.epoch) + " of " +
             std::to_string(total) + " (an unfinished search)");

  FinishStep f{factory, sm.model, sm.config, make_budgets(opt.budgets, strat->num_weights(), macs), json::object(), opt.out,
               "re-derived from " + opt.state};
  f.provenance = {{"method", ex["method"]},
                  {"version", AUTOQNN_VERSION},
                  {"command", opt.command_line},
                  {"seed", ex.value("seed", json(nullptr))},
                  {"checkpoint", ex.value("checkpoint", json(nullptr))},
                  {"dataset", sm.dataset},
                  {"space", ex["space"]},
                  {"search_budget", ex.value("budget", json(nullptr))},
                  {"epochs", ex.value("epochs", 0)},
                  {"warmup", ex.value("warmup", 0)},
                  {"strategy", ex["strategy"]},
                  {"rederived_from_state", opt.state},
                  {"state_epoch", sm.epoch},
                  {"search_command", ex.value("command", "")}};
  SearchResult r = finish_search(*strat, f);
  r.epochs_done = static_cast<int>(sm.epoch);
  return r;
}

}  // namespace autoqnn::search
