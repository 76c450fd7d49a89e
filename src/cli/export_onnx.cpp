#include "export_onnx.h"

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

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
  auto line = [](const char* what, const LogitsComparison& c) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(2) << what << ": top-1 ours " << 100 * c.top1_ours << " %, ONNX Runtime "
       << 100 * c.top1_ort << " %; max |logit diff| " << std::scientific << std::setprecision(3) << c.max_abs_diff
       << " (allowed " << c.tolerance << "); " << c.argmax_diffs << " of " << c.n << " predictions differ";
    return os.str();
  };
  if (verify && !vr.ok) {
    std::remove(target.c_str());
    throw std::runtime_error("ONNX Runtime verification failed (" + out + " not written):\n  " +
                             line("nodes as written", vr.exact) + "\n  " + line("optimized (deployed)", vr.deployed) +
                             "\n  " + vr.rule);
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
  auto cj = [](const LogitsComparison& c) {
    return nlohmann::json{{"images", c.n},           {"max_abs_diff", c.max_abs_diff}, {"tolerance", c.tolerance},
                          {"top1_ours", c.top1_ours}, {"top1_ort", c.top1_ort},         {"argmax_diffs", c.argmax_diffs}};
  };
  if (verify) j["verify"] = {{"ok", vr.ok}, {"exact", cj(vr.exact)}, {"deployed", cj(vr.deployed)}, {"rule", vr.rule}};
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
    std::cout << "verify OK in ONNX Runtime 1.31 on " << vr.exact.n << " test images\n  "
              << line("nodes as written", vr.exact) << "\n  " << line("optimized (deployed)", vr.deployed) << "\n  "
              << vr.rule << "\n";
  return 0;
}
#endif

}  // namespace autoqnn::cli
