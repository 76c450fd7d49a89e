// autoqnn train: FP32 training of a zoo model (SGD + momentum, cosine/step schedule, atomic epoch
// checkpoints, --resume); with --adabits B1,B2,... AdaBits training of one switchable model for every listed
// bitwidth from an FP32 --checkpoint (adabits.h, docs/adabits.md).
#include <iostream>
#include <sstream>

#include "autoqnn/adabits.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/model_io.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "cli.h"

namespace autoqnn::cli {

std::vector<int> parse_int_list(const std::string& s, const std::string& flag) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      size_t pos = 0;
      int v = std::stoi(tok, &pos);
      if (pos != tok.size()) throw std::invalid_argument(tok);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UsageError(flag + ": '" + tok + "' is not an integer (expected a comma-separated list)");
    }
  }
  return out;
}

namespace {

// --adabits: one set of weights for every listed bitwidth (summed losses per step, switchable BN / clips).
int run_train_adabits(const CommonOptions& c, TrainOptions& t, const std::vector<int>& bits, const std::string& ckpt,
                      const std::string& out, bool resume, int64_t calib, const nlohmann::json& recipe_in,
                      const std::string& expect_model) {
  auto splits = load_splits(c.data_options());
  ModelPtr model;
  AdaBitsPlan plan;
  int start_epoch = 0;
  nlohmann::json history = nlohmann::json::array();
  std::string source = ckpt;
  if (resume) {
    if (!file_exists(out)) throw std::runtime_error("--resume: checkpoint '" + out + "' does not exist");
    auto old = read_checkpoint_meta(out);
    plan = adabits_plan_of(old, out);
    if (plan.bits != bits)
      throw std::runtime_error("--resume: '" + out + "' was trained for bits " + plan.bits_string() +
                               ", not the --adabits list given");
    if (!expect_model.empty() && old.model != expect_model)
      throw std::runtime_error("--resume: '" + out + "' holds model '" + old.model + "'");
    model = make_model(old.model, old.config);
    install_adabits(*model, plan);
    load_checkpoint_weights(out, *model);
    start_epoch = static_cast<int>(old.epoch);
    if (old.extra.contains("history")) history = old.extra["history"];
    if (old.extra.contains("source")) source = old.extra["source"].get<std::string>();
    log_info("resuming AdaBits training from epoch " + std::to_string(start_epoch));
  } else {
    auto meta = read_checkpoint_meta(ckpt);
    if (meta.kind != "fp32" || !meta.policy.is_null())
      throw std::runtime_error("--adabits: checkpoint '" + ckpt + "' is '" + meta.kind +
                               "', AdaBits training starts from an FP32 checkpoint");
    auto loaded = load_model(ckpt, expect_model, c.model_config());
    model = loaded.model;
    auto probe = splits.full_train.images.slice(0, 0, std::min<int64_t>(c.batch_size, splits.full_train.size()));
    plan = make_adabits_plan(*model, bits, probe);
    install_adabits(*model, plan);
    model->to(t.device);
    int64_t n = calibrate_adabits(*model, splits.full_train, calib, c.batch_size, c.seed, t.device);
    log_info("AdaBits " + model->name() + " for bits " + plan.bits_string() + ": " +
             std::to_string(plan.layers.size()) + " switchable layers; clips calibrated on " + std::to_string(n) +
             " images");
  }
  nlohmann::json recipe = recipe_in;
  recipe["adabits"] = plan.bits;
  recipe["calib_batches"] = calib;
  t.label = "adabits " + model->name();
  t.step_loss = [&](const torch::Tensor& x, const torch::Tensor& y, torch::Tensor& logits) {
    return adabits_loss(*model, plan.bits, x, y, logits);
  };
  if (start_epoch >= t.epochs) log_info("nothing to do: already trained " + std::to_string(start_epoch) + " epochs");
  auto save = [&](int epoch, torch::optim::Optimizer* optim) {
    CheckpointMeta meta = adabits_meta(*model, plan, c.dataset, epoch);
    meta.extra["recipe"] = recipe;
    meta.extra["history"] = history;
    meta.extra["source"] = source;
    save_checkpoint(out, *model, meta, optim);
  };
  train_model(
      *model, splits.full_train, nullptr, t, start_epoch,
      [&](int epoch, const EpochStats& st, torch::optim::Optimizer& optim) {
        history.push_back({{"epoch", epoch}, {"loss_mean_over_bits", st.train_loss}, {"top1", st.train_top1},
                           {"seconds", st.seconds}, {"images_per_s", st.images_per_s}});
        save(epoch, &optim);
      },
      [&](torch::optim::Optimizer& optim) {
        if (resume && start_epoch > 0 && !load_checkpoint_optimizer(out, optim))
          log_warn("no optimizer state in '" + out + "': momentum restarts");
      });
  if (!file_exists(out)) save(start_epoch, nullptr);
  for (int b : plan.bits) {
    select_bits(*model, b);
    auto r = evaluate_sharded(*model, splits.test, 512, t.device);
    std::ostringstream os;
    os << "test top-1 at " << b << " bits: " << r.top1 << " loss " << r.loss << " (n=" << r.n << ")";
    log_info(os.str());
  }
  log_info("checkpoint " + out + " (autoqnn eval --checkpoint " + out + " --bits B)");
  return 0;
}

}  // namespace

static int run_train(const std::vector<std::string>& args) {
  CommonOptions c;
  TrainOptions t;
  OutputOptions output;
  CheckpointOptions ck;
  CalibBatchOptions calib(8);
  DistributedFlags distributed;
  std::string milestones, adabits;
  bool resume = false, hflip = false;
  int64_t crop = 0;
  po::options_description desc("train options");
  add_common_options(desc, c);
  desc.add_options()
    ("epochs", po::value(&t.epochs)->default_value(10), "training epochs")
    ("lr", po::value(&t.lr)->default_value(0.05), "peak learning rate")
    ("momentum", po::value(&t.momentum)->default_value(0.9), "SGD momentum")
    ("weight-decay", po::value(&t.weight_decay)->default_value(5e-4), "weight decay (conv/linear weights)")
    ("schedule", po::value(&t.schedule)->default_value("cosine"), "cosine | step | constant")
    ("milestones", po::value(&milestones), "step schedule: comma-separated epochs where lr *= gamma")
    ("gamma", po::value(&t.gamma)->default_value(0.1), "step schedule factor")
    ("warmup-epochs", po::value(&t.warmup_epochs)->default_value(0), "linear lr warm-up epochs")
    ("crop-padding", po::value(&crop)->default_value(0), "augmentation: random crop with this zero padding (0 = off)")
    ("hflip", po::bool_switch(&hflip), "augmentation: random horizontal flip");
  output.add(desc, "output checkpoint (written atomically after every epoch)")
    ("resume", po::bool_switch(&resume), "continue from the checkpoint at --out")
    ("adabits", po::value(&adabits), "AdaBits: train ONE switchable model for these bitwidths, e.g. 8,6,5,4 "
                                     "(needs --checkpoint; --lr defaults to 0.01, --weight-decay to 1e-4)");
  ck.add(desc, "--adabits: the FP32 checkpoint to start from", Need::Optional);
  calib.add(desc, "--adabits: batches calibrating the clips");
  distributed.add(desc);
  po::variables_map vm;
  if (!parse("train", "--model NAME --out FP.pt [options]\n       autoqnn train --adabits 8,6,5,4 --checkpoint FP.pt --out ada.pt [options]", desc, args, vm)) return 0;
  const std::string &out = output.path, &ckpt = ck.path;
  std::vector<int> ada_bits;
  if (vm.count("adabits")) {
    try {
      ada_bits = parse_bits_list(adabits, "--adabits");
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    if (ckpt.empty() && !resume) throw UsageError("--adabits needs --checkpoint FP.pt (the FP32 model to start from)");
    calib.check();
    if (vm["lr"].defaulted()) t.lr = 0.01;
    if (vm["weight-decay"].defaulted()) t.weight_decay = 1e-4;
  } else if (!ckpt.empty()) {
    throw UsageError("--checkpoint is only used with --adabits");
  }
  if (t.epochs <= 0) throw UsageError("--epochs must be positive");
  if (t.lr <= 0) throw UsageError("--lr must be positive");
  if (crop < 0) throw UsageError("--crop-padding must be >= 0");
  if (!milestones.empty()) t.milestones = parse_int_list(milestones, "--milestones");
  t.augment.crop_padding = crop;
  t.augment.hflip = hflip;
  t.batch_size = c.batch_size;
  t.seed = c.seed;
  t.device = setup_runtime(c);
  schedule_lr(t, 0, 0);  // bad --schedule is an error before loading data
  distributed.init(c, t.device);
  check_same_command("train", vm);

  if (!ada_bits.empty()) {
    nlohmann::json recipe = {{"epochs", t.epochs}, {"lr", t.lr}, {"momentum", t.momentum},
                             {"weight_decay", t.weight_decay}, {"schedule", t.schedule},
                             {"batch_size", t.batch_size}, {"seed", t.seed}, {"crop_padding", crop},
                             {"hflip", hflip}, {"train_limit", c.train_limit}};
    dist::check_same_settings("train", {{"model", c.model}, {"dataset", c.dataset}, {"recipe", recipe},
                                        {"adabits", ada_bits}, {"checkpoint", ckpt}, {"resume", resume}});
    return run_train_adabits(c, t, ada_bits, ckpt, out, resume, calib.batches, recipe,
                             vm["model"].defaulted() ? "" : c.model);
  }
  auto model = make_model(c.model, c.model_config());
  auto splits = load_splits(c.data_options());
  log_info("model " + c.model + " (" + std::to_string(count_parameters(*model)) + " parameters), " +
           std::to_string(splits.full_train.size()) + " training images");

  CheckpointMeta meta;
  meta.kind = "fp32";
  meta.model = c.model;
  meta.config = c.model_config();
  meta.dataset = c.dataset;
  nlohmann::json history = nlohmann::json::array();
  int start_epoch = 0;
  if (resume) {
    if (!file_exists(out)) throw std::runtime_error("--resume: checkpoint '" + out + "' does not exist");
    auto old = read_checkpoint_meta(out);
    if (old.kind != "fp32" || !old.policy.is_null())
      throw std::runtime_error("--resume: '" + out + "' is a '" + old.kind + "' checkpoint; train --resume continues " +
                               "FP32 training (use `autoqnn finetune --resume` for a quantized checkpoint)");
    if (old.model != c.model) throw std::runtime_error("--resume: '" + out + "' holds model '" + old.model + "'");
    load_checkpoint_weights(out, *model);
    start_epoch = static_cast<int>(old.epoch);
    if (old.extra.contains("history")) history = old.extra["history"];
    log_info("resuming from epoch " + std::to_string(start_epoch));
    if (start_epoch >= t.epochs) log_info("nothing to do: already trained " + std::to_string(start_epoch) + " epochs");
  }
  nlohmann::json recipe = {{"epochs", t.epochs}, {"lr", t.lr}, {"momentum", t.momentum},
                           {"weight_decay", t.weight_decay}, {"schedule", t.schedule},
                           {"batch_size", t.batch_size}, {"seed", t.seed}, {"crop_padding", crop},
                           {"hflip", hflip}, {"train_limit", c.train_limit}};
  dist::check_same_settings("train", {{"model", c.model}, {"dataset", c.dataset}, {"recipe", recipe},
                                      {"resume", resume}, {"start_epoch", start_epoch}});
  t.label = "train " + c.model;
  train_model(
      *model, splits.full_train, nullptr, t, start_epoch,
      [&](int epoch, const EpochStats& st, torch::optim::Optimizer& optim) {
        history.push_back({{"epoch", epoch}, {"loss", st.train_loss}, {"top1", st.train_top1},
                           {"seconds", st.seconds}, {"images_per_s", st.images_per_s}});
        meta.epoch = epoch;
        meta.extra = {{"recipe", recipe}, {"history", history}};
        save_checkpoint(out, *model, meta, &optim);
      },
      [&](torch::optim::Optimizer& optim) {
        if (resume && start_epoch > 0 && !load_checkpoint_optimizer(out, optim))
          log_warn("no optimizer state in '" + out + "': momentum restarts");
      });
  auto r = evaluate_sharded(*model, splits.test, 512, t.device);
  std::ostringstream os;
  os << "test top-1 " << r.top1 << " loss " << r.loss << " (n=" << r.n << "); checkpoint " << out;
  log_info(os.str());
  return 0;
}

AUTOQNN_VERB("train", "train a zoo model in FP32", run_train);

}  // namespace autoqnn::cli
