// autoqnn convert: FP32 checkpoint + policy -> quantized checkpoint (quantizers installed and calibrated).
#include <iostream>

#include "autoqnn/convert.h"
#include "autoqnn/model_io.h"
#include "autoqnn/runtime.h"
#include "cli.h"

namespace autoqnn::cli {

namespace {

int run_convert(const std::vector<std::string>& args) {
  CommonOptions c;
  CheckpointOptions ck;
  PolicyOptions pol;
  OutputOptions out;
  CalibBatchOptions calib(8);
  po::options_description desc("convert options");
  add_common_options(desc, c);
  ck.add(desc, "FP32 checkpoint (autoqnn train)");
  pol.add(desc, "quantization policy JSON");
  calib.add(desc, "training mini-batches used to calibrate data-dependent quantizer state (0 = weights only)");
  out.add(desc, "quantized checkpoint to write (atomically)");
  po::variables_map vm;
  if (!parse("convert", "--model NAME --checkpoint FP.pt --policy P.json --out Q.pt [--calib-batches N]", desc, args,
             vm))
    return 0;
  calib.check();
  const std::string &ckpt = ck.path, &policy_path = pol.path;
  auto device = setup_runtime(c);

  auto meta = read_checkpoint_meta(ckpt);
  if (!meta.policy.is_null())
    throw std::runtime_error("checkpoint '" + ckpt + "' is already quantized (kind '" + meta.kind +
                             "'); convert takes an FP32 checkpoint (use `autoqnn finetune` to continue training)");
  std::string expect = vm["model"].defaulted() ? "" : c.model;
  auto loaded = load_model(ckpt, expect, c.model_config(), policy_path);  // FP32 weights, then the policy
  Model& model = *loaded.model;
  model.to(device);

  CalibOptions co;
  co.batches = calib.batches;
  co.batch_size = c.batch_size;
  co.seed = c.seed;
  co.device = device;
  CalibStats st;
  if (calib.batches > 0) {
    auto splits = load_splits(c.data_options());
    st = calibrate_model(model, splits.full_train, co);
  } else {
    st = calibrate_model(model, TensorDataset{}, co);
  }
  log_info("calibrated " + std::to_string(st.weight_quantizers) + " weight / " + std::to_string(st.act_quantizers) +
           " activation quantizers on " + std::to_string(st.images) + " images (" + std::to_string(st.batches) +
           " batches)");

  CheckpointMeta qm = quantized_meta(model, loaded.policy, c.dataset, 0);
  qm.extra = {{"converted_from", ckpt},
              {"policy_file", policy_path},
              {"calib_batches", st.batches},
              {"calib_images", st.images},
              {"seed", c.seed}};
  save_checkpoint(out.path, model, qm);
  std::cout << "wrote " << out.path << ": " << meta.model << " quantized with " << policy_path << " ("
            << loaded.policy.totals.weight_bytes << " weight bytes, " << loaded.policy.totals.avg_weight_bits
            << " bits/weight)\n";
  return 0;
}

}  // namespace

AUTOQNN_VERB("convert", "install a policy's quantizers into an FP32 checkpoint and calibrate them", run_convert);

}  // namespace autoqnn::cli
