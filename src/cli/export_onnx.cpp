#include "export_onnx.h"

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "autoqnn/data.h"
#include "autoqnn/runtime.h"
#ifdef AUTOQNN_WITH_ONNX
#include "autoqnn/onnx/onnx_export.h"
#include "autoqnn/onnx/onnx_verify.h"
#endif

namespace autoqnn::cli {

#ifndef AUTOQNN_WITH_ONNX
int export_onnx_verb(const CommonOptions&, Model&, const Policy&, const std::string&, bool, int64_t, bool) {
  throw std::runtime_error("this autoqnn was built without ONNX (libonnx-dev was not found at configure time)");
}
#else
int export_onnx_verb(const CommonOptions& c, Model& model, const Policy& policy, const std::string& out, bool verify,
                     int64_t verify_images, bool json) {
  const ModelGraph graph = zoo_model_graph(model);
  // With --verify the file is written next to --out, run, then renamed over it.
  const std::string target = verify ? out + ".verify-tmp" : out;
  OnnxExportReport rep;
  OnnxVerifyResult vr;
  try {
    rep = export_onnx(model, graph, policy, target);
    if (verify) {
      DataOptions d = c.data_options();
      d.train_limit = 1;
      if (verify_images > 0) d.test_limit = d.test_limit > 0 ? std::min(d.test_limit, verify_images) : verify_images;
      auto splits = load_splits(d);
      vr = verify_onnx(model, graph, rep, target, splits.test, c.batch_size);
    }
  } catch (...) {
    if (verify) std::remove(target.c_str());
    throw;
  }
  if (verify && !vr.cmp.ok) {
    std::remove(target.c_str());
    std::ostringstream os;
    os << "ONNX Runtime verification failed (" << out << " not written): max |logit diff| " << vr.cmp.max_abs_diff
       << " (allowed " << vr.cmp.tolerance << "), top-1 ours " << 100 * vr.cmp.top1_ours << " %, ONNX Runtime "
       << 100 * vr.cmp.top1_ort << " % on " << vr.cmp.n << " images";
    throw std::runtime_error(os.str());
  }
  if (verify) std::filesystem::rename(target, out);

  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : rep.layers)
    layers.push_back({{"name", l.name}, {"spec", l.spec}, {"weight_form", l.weight_form}, {"act_form", l.act_form},
                      {"onnx_weight_bytes", l.onnx_weight_bytes}, {"policy_bytes", l.policy_bytes}});
  nlohmann::json j = {{"out", out},
                      {"format", "onnx"},
                      {"model", model.name()},
                      {"nodes", rep.nodes},
                      {"act_qdq", rep.act_qdq},
                      {"onnx_weight_bytes", rep.onnx_weight_bytes},
                      {"policy_weight_bytes", rep.policy_weight_bytes},
                      {"other_bytes", rep.other_bytes},
                      {"file_bytes", rep.file_bytes},
                      {"layers", layers}};
  if (verify)
    j["verify"] = {{"ok", vr.cmp.ok},          {"images", vr.cmp.n},           {"max_abs_diff", vr.cmp.max_abs_diff},
                   {"tolerance", vr.cmp.tolerance}, {"rule", vr.rule},        {"top1_ours", vr.cmp.top1_ours},
                   {"top1_ort", vr.cmp.top1_ort}, {"argmax_diffs", vr.cmp.argmax_diffs}};
  if (json) {
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::cout << "wrote " << out << " (ONNX opset 13, " << rep.nodes << " nodes, " << rep.act_qdq
            << " quantized activation inputs): file " << rep.file_bytes << " bytes, weights " << rep.onnx_weight_bytes
            << " bytes (policy packed " << rep.policy_weight_bytes << "), other " << rep.other_bytes << " bytes\n";
  for (const auto& l : rep.layers)
    std::cout << "  " << std::left << std::setw(18) << l.name << std::setw(20) << l.spec << std::setw(40) << l.weight_form
              << std::right << std::setw(9) << l.onnx_weight_bytes << " B (packed " << l.policy_bytes << ")"
              << (l.act_form.empty() ? "" : "  act " + l.act_form) << "\n";
  if (verify)
    std::cout << std::fixed << std::setprecision(2) << "verify OK in ONNX Runtime on " << vr.cmp.n
              << " test images: top-1 ours " << 100 * vr.cmp.top1_ours << " %, ONNX Runtime " << 100 * vr.cmp.top1_ort
              << " %; max |logit diff| " << std::scientific << std::setprecision(3) << vr.cmp.max_abs_diff
              << " (allowed " << vr.cmp.tolerance << ", " << vr.rule << "); " << vr.cmp.argmax_diffs
              << " predictions differ\n";
  return 0;
}
#endif

}  // namespace autoqnn::cli
