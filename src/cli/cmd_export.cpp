// autoqnn export: a quantized checkpoint as a packed safetensors file (bit-packed codes + dequantisation
// data + float biases/BN + the policy in __metadata__; --verify reloads it and checks it bit for bit), or
// with --format onnx as an ONNX model (export_onnx.cpp; --verify runs it in ONNX Runtime on the test set).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "autoqnn/convert.h"
#include "autoqnn/export.h"
#include "autoqnn/output_files.h"
#include "autoqnn/model_io.h"
#include "autoqnn/runtime.h"
#include "autoqnn/torchscript_model.h"
#include "cli.h"
#include "export_onnx.h"

namespace autoqnn::cli {

namespace {

int run_export(const std::vector<std::string>& args) {
  CommonOptions c;
  CheckpointOptions ck;
  PolicyOptions pol;
  OutputOptions output;
  bool verify = false, json = false, keep_latent = false;
  std::string format = "packed";
  int64_t verify_images = 0;
  po::options_description desc("export options");
  add_common_options(desc, c);
  ck.add(desc, "quantized checkpoint (autoqnn convert / finetune)");
  pol.add(desc, "policy JSON (default: the one recorded in the checkpoint; must match it)", Need::Optional);
  output.add(desc, "safetensors file to write")
    ("verify", po::bool_switch(&verify), "reload the file and check it bit for bit before it replaces --out")
    ("format", po::value(&format)->default_value("packed"),
     "packed (safetensors codes; also 'safetensors') | onnx (QDQ ONNX, opset 13) | torchscript (imported models: "
     "standard ATen ops, quantized weights baked in)")
    ("keep-latent", po::bool_switch(&keep_latent),
     "--format torchscript: keep the FP32 latent weights, the quantizer scales as buffers and the fake-quant as "
     "ATen ops (fixed / uniform / pact) instead of baked quantized weights")
    ("verify-images", po::value(&verify_images)->default_value(0),
     "--format onnx --verify: compare on the first N test images (0 = the test set, or --test-limit)")
    ("json", po::bool_switch(&json), "print one JSON object on stdout");
  po::variables_map vm;
  if (!parse("export", "--model NAME --checkpoint Q.pt [--policy P.json] --out FILE [--format packed|onnx|torchscript] [--verify]",
             desc, args, vm))
    return 0;
  if (format == "safetensors") format = "packed";
  if (format != "packed" && format != "onnx" && format != "torchscript")
    throw UsageError("--format must be packed, onnx or torchscript, got '" + format + "'");
  if (verify_images < 0) throw UsageError("--verify-images must be >= 0");
  if (keep_latent && format != "torchscript") throw UsageError("--keep-latent needs --format torchscript");
  setup_runtime(c);  // export runs on the CPU
  const std::string &ckpt = ck.path, &policy_path = pol.path, &out = output.path;

  auto meta = read_checkpoint_meta(ckpt);
  if (meta.policy.is_null() && policy_path.empty())
    throw UsageError("checkpoint '" + ckpt + "' is FP32 and no --policy was given (convert it first)");
  if (!meta.policy.is_null() && !policy_path.empty()) {
    Policy given = load_policy(policy_path);
    Policy recorded = Policy::from_json(meta.policy, ckpt + " (recorded policy)");
    for (const auto& l : given.layers) {
      const LayerPolicy* r = recorded.find(l.name);
      if (r && (r->weight != l.weight || r->act != l.act))
        throw std::runtime_error("policy '" + policy_path + "' differs from the one recorded in '" + ckpt +
                                 "' at layer '" + l.name + "' (" + l.weight.to_string() + " vs " +
                                 r->weight.to_string() + "): export the checkpoint with its own policy");
    }
  }
  std::string expect = vm["model"].defaulted() ? "" : c.model;
  auto loaded = load_model(ckpt, expect, c.model_config(), policy_path);
  Model& model = *loaded.model;
  model.to(torch::kCPU);
  if (meta.policy.is_null()) {
    log_warn("'" + ckpt + "' is an FP32 checkpoint: weight quantizers calibrated on the weights, activation "
             "quantizers left uncalibrated (run `autoqnn convert` for a calibrated model)");
    calibrate_model(model, TensorDataset{}, CalibOptions{});
  }

  if (format == "onnx") return export_onnx_verb(c, model, loaded.policy, out, verify, verify_images, json);

  if (format == "torchscript") {  // plain torch.jit.load runs it, without our library
    auto* ts = dynamic_cast<TorchScriptModel*>(&model);
    if (!ts) throw UsageError("--format torchscript needs an imported model (--model PATH.pt), not '" + model.name() + "'");
    TorchScriptExportOptions eo;
    eo.keep_latent = keep_latent;
    auto plain = ts->export_plain(eo);
    atomic_write(out, [&](const std::string& tmp) { plain.save(tmp); });
    if (json) std::cout << nlohmann::json{{"out", out}, {"format", format}, {"model", model.name()}, {"keep_latent", keep_latent}}.dump() << std::endl;
    else std::cout << "wrote " << out << " (TorchScript, standard ATen ops, "
                   << (keep_latent ? "FP32 latent weights + scale buffers" : "quantized weights baked in") << ")\n";
    return 0;
  }
  // With --verify the file is written next to --out, checked, then renamed over it: a file that fails
  // verification never replaces --out.
  const std::string target = verify ? temp_path_for(out) : out;  // a stale one is removed by the next write
  ExportReport rep;
  VerifyReport vr;
  try {
    rep = export_model(model, loaded.policy, target);
    if (verify) vr = verify_export(model, loaded.policy, target);
  } catch (...) {
    if (verify) std::remove(target.c_str());
    throw;
  }
  if (verify && !vr.ok) {
    std::remove(target.c_str());
    std::string msg = "verification of the export failed (" + out + " not written):";
    for (size_t i = 0; i < vr.problems.size() && i < 20; ++i) msg += "\n  " + vr.problems[i];
    throw std::runtime_error(msg);
  }
  if (verify) std::filesystem::rename(target, out);

  nlohmann::json j = {{"out", out},
                      {"model", model.name()},
                      {"tensors", rep.tensors},
                      {"weight_bytes", rep.weight_bytes},
                      {"policy_weight_bytes", rep.policy_weight_bytes},
                      {"other_bytes", rep.other_bytes},
                      {"header_bytes", rep.header_bytes},
                      {"file_bytes", rep.file_bytes},
                      {"avg_weight_bits", loaded.policy.totals.avg_weight_bits}};
  if (verify)
    j["verify"] = {{"ok", vr.ok},
                   {"layers", vr.layers_checked},
                   {"tensors", vr.tensors_checked},
                   {"weights", vr.weights_checked},
                   {"signed_zero_diffs", vr.signed_zero_diffs}};
  if (json) {
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "wrote " << out << ": " << rep.tensors << " tensors, weights " << rep.weight_bytes
              << " bytes (policy " << rep.policy_weight_bytes << "), other " << rep.other_bytes << " bytes, header "
              << rep.header_bytes << " bytes, file " << rep.file_bytes << " bytes\n";
    if (verify)
      std::cout << "verify OK: " << vr.layers_checked << " layers, " << vr.weights_checked
                << " weights bit-identical to the model's fake-quantized weights, " << vr.tensors_checked
                << " tensors checked" << (vr.signed_zero_diffs ? " (" + std::to_string(vr.signed_zero_diffs) +
                                                                     " +0/-0 pairs)" : std::string())
                << "\n";
  }
  return 0;
}

}  // namespace

AUTOQNN_VERB("export", "write a quantized checkpoint as packed safetensors or ONNX (--verify: bit-exact reload / ONNX Runtime check)",
             run_export);

}  // namespace autoqnn::cli
