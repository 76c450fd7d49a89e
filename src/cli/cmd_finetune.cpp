// autoqnn finetune: quantization-aware training with the policy fixed (learned quantizer parameters are
// trained with the weights; BatchNorm trains normally and its statistics are re-estimated under
// quantization), atomic epoch checkpoints, --resume.
#include <iostream>
#include <sstream>

#include "autoqnn/convert.h"
#include "autoqnn/model_io.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "cli.h"

namespace autoqnn::cli {

namespace {

bool same_specs(const Policy& a, const Policy& b) {
  if (a.layers.size() != b.layers.size()) return false;
  for (size_t i = 0; i < a.layers.size(); ++i)
    if (a.layers[i].name != b.layers[i].name || !same_quantizers(a.layers[i], b.layers[i])) return false;
  return true;
}

int run_finetune(const std::vector<std::string>& args) {
  CommonOptions c;
  TrainOptions t;
  CheckpointOptions ck;
  PolicyOptions pol;
  OutputOptions output;
  CalibBatchOptions calib(8);
  DistributedFlags distributed;
  bool resume = false, hflip = false;
  int64_t crop = 0;
  po::options_description desc("finetune options");
  add_common_options(desc, c);
  ck.add(desc, "starting checkpoint: FP32 (then --policy is required and the quantizers are calibrated first) or "
              "quantized (autoqnn convert)", Need::Optional);
  pol.add(desc, "quantization policy JSON (default: the one recorded in the checkpoint)", Need::Optional)
    ("epochs", po::value(&t.epochs)->default_value(2), "finetuning epochs")
    ("lr", po::value(&t.lr)->default_value(0.01), "peak learning rate (cosine schedule)")
    ("momentum", po::value(&t.momentum)->default_value(0.9), "SGD momentum")
    ("weight-decay", po::value(&t.weight_decay)->default_value(1e-4), "weight decay (conv/linear weights)")
    ("schedule", po::value(&t.schedule)->default_value("cosine"), "cosine | step | constant")
    ("quant-lr-scale", po::value(&t.quant_lr_scale)->default_value(1.0), "lr multiplier for quantizer parameters");
  calib.add(desc, "calibration batches when starting from an FP32 checkpoint")
    ("crop-padding", po::value(&crop)->default_value(0), "augmentation: random crop with this zero padding (0 = off)")
    ("hflip", po::bool_switch(&hflip), "augmentation: random horizontal flip");
  output.add(desc, "quantized checkpoint (written atomically after every epoch)")
    ("resume", po::bool_switch(&resume), "continue from the checkpoint at --out (weights, optimizer, epoch)");
  distributed.add(desc);
  po::variables_map vm;
  if (!parse("finetune", "--model NAME --checkpoint CKPT [--policy P.json] --epochs N --out Q.pt [--resume]", desc,
             args, vm))
    return 0;
  if (t.epochs <= 0) throw UsageError("--epochs must be positive");
  if (t.lr <= 0) throw UsageError("--lr must be positive");
  if (crop < 0) throw UsageError("--crop-padding must be >= 0");
  calib.check();
  std::string ckpt = ck.path;  // --resume takes it from the checkpoint at --out
  const std::string &policy_path = pol.path, &out = output.path;
  if (!resume && ckpt.empty() && is_imported_model_name(c.model)) ckpt = c.model;  // its own FP32 weights
  if (!resume && ckpt.empty()) throw UsageError("--checkpoint is required (unless --resume)");
  t.augment.crop_padding = crop;
  t.augment.hflip = hflip;
  t.batch_size = c.batch_size;
  t.seed = c.seed;
  t.device = setup_runtime(c);
  schedule_lr(t, 0, 0);  // a bad --schedule fails before any work
  distributed.init(c, t.device);
  check_same_command("finetune", vm);

  std::string expect = vm["model"].defaulted() ? "" : c.model;
  LoadedModel loaded;
  int start_epoch = 0;
  nlohmann::json history = nlohmann::json::array();
  bool needs_calibration = false;
  if (resume) {
    if (!file_exists(out)) throw std::runtime_error("--resume: checkpoint '" + out + "' does not exist");
    loaded = load_model(out, expect, c.model_config());
    if (!loaded.has_policy) throw std::runtime_error("--resume: '" + out + "' is not a quantized checkpoint");
    if (!policy_path.empty() && !same_specs(load_policy(policy_path), loaded.policy))
      throw std::runtime_error("--resume: policy '" + policy_path + "' differs from the one recorded in '" + out + "'");
    start_epoch = static_cast<int>(loaded.meta.epoch);
    if (loaded.meta.extra.contains("history")) history = loaded.meta.extra["history"];
    if (loaded.meta.extra.contains("source")) ckpt = loaded.meta.extra["source"].get<std::string>();
    log_info("resuming from epoch " + std::to_string(start_epoch));
  } else {
    auto meta = read_checkpoint_meta(ckpt);
    if (meta.policy.is_null() && policy_path.empty())
      throw UsageError("checkpoint '" + ckpt + "' is FP32: pass --policy P.json");
    bool recorded_differs = false;
    if (!meta.policy.is_null() && !policy_path.empty())
      recorded_differs = !same_specs(Policy::from_json(meta.policy, ckpt), load_policy(policy_path));
    loaded = load_model(ckpt, expect, c.model_config(), policy_path);
    needs_calibration = meta.policy.is_null() || recorded_differs;
  }
  Model& model = *loaded.model;
  model.to(t.device);
  auto splits = load_splits(c.data_options());
  if (needs_calibration) {
    CalibOptions co;
    co.batches = calib.batches;
    co.batch_size = c.batch_size;
    co.seed = c.seed;
    co.device = t.device;
    auto st = calibrate_model(model, splits.full_train, co);
    log_info(calib_summary(st));
  }
  log_info("finetuning " + model.name() + " (" + std::to_string(loaded.policy.totals.weight_bytes) + " weight bytes, " +
           std::to_string(loaded.policy.totals.avg_weight_bits) + " bits/weight) on " +
           std::to_string(splits.full_train.size()) + " images");

  nlohmann::json recipe = {{"epochs", t.epochs}, {"lr", t.lr}, {"momentum", t.momentum},
                           {"weight_decay", t.weight_decay}, {"schedule", t.schedule},
                           {"quant_lr_scale", t.quant_lr_scale}, {"batch_size", t.batch_size}, {"seed", t.seed},
                           {"crop_padding", crop}, {"hflip", hflip}, {"train_limit", c.train_limit}};
  // Calibration above used the same whole batches on every rank: the replicas start identical.
  dist::check_same_settings("finetune", {{"model", model.name()}, {"dataset", c.dataset}, {"recipe", recipe},
                                         {"checkpoint", ckpt}, {"policy", loaded.policy.to_json()},
                                         {"resume", resume}, {"start_epoch", start_epoch}});
  t.label = "finetune " + model.name();
  if (start_epoch >= t.epochs) log_info("nothing to do: already finetuned " + std::to_string(start_epoch) + " epochs");
  train_model(
      model, splits.full_train, nullptr, t, start_epoch,
      [&](int epoch, const EpochStats& st, torch::optim::Optimizer& optim) {
        history.push_back({{"epoch", epoch}, {"loss", st.train_loss}, {"top1", st.train_top1},
                           {"seconds", st.seconds}, {"images_per_s", st.images_per_s}});
        CheckpointMeta meta = quantized_meta(model, loaded.policy, c.dataset, epoch);
        meta.extra = {{"finetune", recipe}, {"history", history}, {"source", ckpt}};
        save_checkpoint(out, model, meta, &optim);
      },
      [&](torch::optim::Optimizer& optim) {
        if (resume && start_epoch > 0 && !load_checkpoint_optimizer(out, optim))
          log_warn("no optimizer state in '" + out + "': momentum restarts");
      });
  if (start_epoch >= t.epochs && !file_exists(out)) save_checkpoint(out, model, quantized_meta(model, loaded.policy, c.dataset, start_epoch));
  auto r = evaluate_sharded(model, splits.test, 512, t.device);
  std::ostringstream os;
  os << "test top-1 " << r.top1 << " loss " << r.loss << " (n=" << r.n << "); checkpoint " << out;
  log_info(os.str());
  return 0;
}

}  // namespace

AUTOQNN_VERB("finetune", "quantization-aware finetuning of a checkpoint under a fixed policy", run_finetune);

}  // namespace autoqnn::cli
