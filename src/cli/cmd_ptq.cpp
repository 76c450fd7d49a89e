// autoqnn ptq: post-training quantization without finetuning (ACIQ clipping, per-channel bit allocation,
// bias correction, BN folding; docs/ptq.md) -> an ordinary quantized checkpoint + policy.
#include <iostream>

#include "autoqnn/convert.h"
#include "autoqnn/model_io.h"
#include "autoqnn/ptq.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "cli.h"

namespace autoqnn::cli {
namespace {

int run_ptq_verb(const std::vector<std::string>& args) {
  CommonOptions c;
  ptq::PtqOptions o;
  CheckpointOptions ck;
  OutputOptions output;
  CalibBatchOptions calib(o.calib_batches);
  std::string policy_out, weight = "uniform:4:per_channel", act = "uniform:4:asym", aciq, bit_alloc, bc;
  bool eval = false, json = false, no_guard = false;
  DistributedFlags distributed;
  po::options_description desc("ptq options");
  add_common_options(desc, c);
  distributed.add(desc);
  ck.add(desc, "FP32 checkpoint (autoqnn train)")
    ("weight", po::value(&weight)->default_value(weight), "weight quantizer spec of every layer")
    ("act", po::value(&act)->default_value(act), "input-activation quantizer spec of every layer (fp32 = none)")
    ("keep-first-last", po::value(&o.keep_first_last)->default_value(0),
     "first and last layer at fixed:<N> (weights, and activations when quantized); 0 = like the others")
    ("aciq", po::value(&aciq), "ACIQ analytical activation clipping: laplace | gauss (needs a uniform --act)")
    ("no-aciq-guard", po::bool_switch(&no_guard),
     "keep ACIQ's clip on every layer (default: a layer keeps its min-max range where that gives the lower "
     "layer-output error on calibration rows)")
    ("bit-alloc", po::value(&bit_alloc), "per-channel bit allocation at the spec's average: weights | acts | weights,acts")
    ("max-channel-bits", po::value(&o.max_channel_bits)->default_value(o.max_channel_bits),
     "upper clamp of the per-channel allocation")
    ("bias-correction", po::value(&bc), "weight bias correction: mean | mean+var")
    ("fold-bn", po::bool_switch(&o.fold_bn), "fold BatchNorm into the preceding convolutions first");
  calib.add(desc, "training mini-batches for activation statistics and ranges");
  output.add(desc, "quantized checkpoint to write (atomically)")
    ("policy-out", po::value(&policy_out)->required(), "policy JSON to write (atomically)")
    ("eval", po::bool_switch(&eval), "evaluate the result on the test split")
    ("json", po::bool_switch(&json), "with --eval: one JSON object on stdout");
  po::variables_map vm;
  if (!parse("ptq",
             "--model NAME --checkpoint FP.pt --weight SPEC --act SPEC [--aciq laplace|gauss] "
             "[--bit-alloc weights,acts] [--bias-correction mean|mean+var] [--fold-bn] [--calib-batches N] "
             "--out Q.pt --policy-out P.json",
             desc, args, vm))
    return 0;
  const std::string &ckpt = ck.path, &out = output.path;
  o.calib_batches = calib.batches;
  try {
    o.weight = quant::QuantSpec::parse(weight);
    o.act = quant::QuantSpec::parse(act);
    o.aciq = aciq;
    o.aciq_guard = !no_guard;
    if (no_guard && aciq.empty()) throw std::invalid_argument("--no-aciq-guard needs --aciq");
    if (!bit_alloc.empty()) std::tie(o.alloc_weights, o.alloc_acts) = ptq::parse_bit_alloc(bit_alloc);
    o.bias_correction = bc;
    if (o.keep_first_last < 0) throw std::invalid_argument("--keep-first-last must be >= 0");
    ptq::validate(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  auto device = setup_runtime(c);
  distributed.init(c, device);  // data parallel: activation statistics sharded and reduced, rank 0 writes
  check_same_command("ptq", vm);
  auto meta = read_checkpoint_meta(ckpt);
  if (!meta.policy.is_null())
    throw std::runtime_error("checkpoint '" + ckpt + "' is already quantized (kind '" + meta.kind +
                             "'); ptq takes an FP32 checkpoint");
  std::string expect = vm["model"].defaulted() ? "" : c.model;
  auto loaded = load_model(ckpt, expect, c.model_config());
  Model& model = *loaded.model;
  o.batch_size = c.batch_size;
  o.seed = c.seed;
  o.device = device;
  auto splits = load_splits(c.data_options());
  auto res = ptq::run_ptq(model, splits.full_train, o);

  CheckpointMeta qm = quantized_meta(model, res.policy, c.dataset, 0);
  nlohmann::json folded = nlohmann::json::array();
  for (const auto& [cv, bn] : res.folded) folded.push_back({cv, bn});
  qm.extra = {{"converted_from", ckpt}, {"ptq", res.policy.search}, {"bn_folded", folded}, {"layers", res.layers}};
  save_policy(policy_out, res.policy);
  save_checkpoint(out, model, qm);
  log_info("ptq: wrote " + out + " and " + policy_out + " (" + std::to_string(res.policy.totals.weight_bytes) +
           " weight bytes, " + std::to_string(res.policy.totals.avg_weight_bits) + " bits/weight)");
  if (eval) {
    auto r = evaluate_sharded(model, splits.test, c.batch_size, device);
    if (!dist::is_main()) return 0;
    nlohmann::json j = {{"top1", r.top1},
                        {"loss", r.loss},
                        {"n", r.n},
                        {"model", model.name()},
                        {"checkpoint", out},
                        {"weight_bytes", res.policy.totals.weight_bytes},
                        {"avg_weight_bits", res.policy.totals.avg_weight_bits},
                        {"act_bytes", res.policy.totals.act_bytes},
                        {"bops", res.policy.totals.bops}};
    if (json)
      std::cout << j.dump() << std::endl;
    else
      std::cout << "model " << model.name() << "  top-1 " << r.top1 * 100 << " %  loss " << r.loss << "  (n=" << r.n
                << ")  weights " << res.policy.totals.weight_bytes << " B, " << res.policy.totals.avg_weight_bits
                << " bits avg" << std::endl;
  } else if (dist::is_main()) {
    std::cout << "wrote " << out << " and " << policy_out << std::endl;
  }
  return 0;
}

}  // namespace

AUTOQNN_VERB("ptq", "post-training quantization (ACIQ, bit allocation, bias correction, BN folding)", run_ptq_verb);

}  // namespace autoqnn::cli
