// autoqnn eval: top-1 / loss of a checkpoint on the test set, FP32 or quantized (--policy).
#include <iostream>

#include "autoqnn/checkpoint_classes.h"
#include "autoqnn/convert.h"
#include "autoqnn/data_folder.h"
#include "autoqnn/model_io.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "cli.h"

namespace autoqnn::cli {

static int run_eval(const std::vector<std::string>& args) {
  CommonOptions c;
  CheckpointOptions ck;
  PolicyOptions pol;
  CalibBatchOptions calib(8);
  bool json = false;
  int bits = 0;
  po::options_description desc("eval options");
  add_common_options(desc, c);
  ck.add(desc, "checkpoint to evaluate");
  pol.add(desc, "quantization policy JSON (default: the one recorded in the checkpoint)", Need::Optional)
    ("bits", po::value(&bits), "AdaBits checkpoints: run the switchable model at this listed bitwidth");
  calib.add(desc, "--policy on a checkpoint without it: training batches that calibrate the new quantizers")
    ("json", po::bool_switch(&json), "print one JSON object on stdout");
  po::variables_map vm;
  if (!parse("eval", "--model NAME --checkpoint CKPT [--policy P.json] [--json]", desc, args, vm)) return 0;
  if (vm.count("bits") && bits <= 0) throw UsageError("--bits must be a positive bitwidth of the AdaBits model");
  auto device = setup_runtime(c);
  // --model defaults to lenet5; an explicit value must match the checkpoint.
  std::string expect = vm["model"].defaulted() ? "" : c.model;
  calib.check();
  const std::string &ckpt = ck.path, &policy = pol.path;
  // A given policy that the checkpoint was not trained with (an FP32 checkpoint, or other quantizers) has
  // quantizers with no data-dependent state yet: calibrate them as `convert` does before measuring.
  bool needs_calibration = false;
  if (!policy.empty()) {
    const auto meta = read_checkpoint_meta(ckpt);
    if (meta.policy.is_null()) {
      needs_calibration = true;
    } else {
      const Policy rec = Policy::from_json(meta.policy, ckpt), given = load_policy(policy);
      needs_calibration = rec.layers.size() != given.layers.size();
      for (size_t i = 0; !needs_calibration && i < rec.layers.size(); ++i)
        needs_calibration = rec.layers[i].name != given.layers[i].name || !same_quantizers(rec.layers[i], given.layers[i]);
    }
  }
  auto loaded = load_model(ckpt, expect, c.model_config(), policy, bits);
  loaded.model->to(device);
  DataOptions d = c.data_options();
  // eval reads only the test split (plus the calibration batches when it calibrates)
  // (the same training images and shuffle as `convert`, so both give the same quantizers)
  if (!(needs_calibration && calib.batches > 0)) d.train_limit = 1;
  auto splits = load_splits(d);
  if (needs_calibration && calib.batches > 0) {
    CalibOptions co;
    co.batches = calib.batches;
    co.batch_size = c.batch_size;
    co.seed = c.seed;
    co.device = device;
    auto st = calibrate_model(*loaded.model, splits.full_train, co);
    log_info("eval: " + calib_summary(st));
  }
  auto r = evaluate(*loaded.model, splits.test, c.batch_size, device);
  nlohmann::json j = {{"top1", r.top1}, {"loss", r.loss}, {"n", r.n}, {"model", loaded.meta.model},
                      {"checkpoint", ckpt}};
  // The class names: the checkpoint's record, else the folder's (a TorchScript file has none recorded).
  std::vector<std::string> classes = read_checkpoint_classes(ckpt);
  if (is_folder_dataset(c.dataset)) {
    const auto have = folder_class_names(c.dataset);
    if (!classes.empty() && classes != have)
      throw std::runtime_error("checkpoint '" + ckpt + "' was trained on other classes than data set '" + c.dataset +
                               "' has (first '" + classes.front() + "' vs '" + have.front() + "')");
    classes = have;
  }
  if (!classes.empty()) j["classes"] = classes;
  if (!loaded.switch_bits.empty()) {
    j["adabits"] = loaded.switch_bits;
    if (loaded.active_bits) j["bits"] = loaded.active_bits;
  }
  if (loaded.has_policy) {
    j["weight_bytes"] = loaded.policy.totals.weight_bytes;
    j["avg_weight_bits"] = loaded.policy.totals.avg_weight_bits;
    j["act_bytes"] = loaded.policy.totals.act_bytes;
    j["bops"] = loaded.policy.totals.bops;
  } else {
    // Same accounting as a policy: conv/linear weights only (biases and BN are reported by export).
    j["weight_bytes"] = blank_policy(*loaded.model).totals.weight_bytes;
    j["avg_weight_bits"] = 32.0;
  }
  if (json) {
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "model " << loaded.meta.model << "  top-1 " << r.top1 * 100 << " %  loss " << r.loss << "  (n=" << r.n
              << ")";
    if (loaded.has_policy)
      std::cout << "  weights " << loaded.policy.totals.weight_bytes << " B, " << loaded.policy.totals.avg_weight_bits
                << " bits avg";
    std::cout << std::endl;
    if (!classes.empty()) {
      std::cout << "classes";
      for (size_t i = 0; i < classes.size(); ++i)
        std::cout << (i ? ", " : " ") << i << " " << classes[i];
      std::cout << std::endl;
    }
  }
  return 0;
}

AUTOQNN_VERB("eval", "evaluate a checkpoint (FP32 or quantized) on the test set", run_eval);

}  // namespace autoqnn::cli
