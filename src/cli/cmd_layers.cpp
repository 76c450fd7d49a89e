// autoqnn layers: the quantizable layers of a model (a zoo name or an imported TorchScript file) with the
// numbers the budgets use: kind, weight shape, #weights, MACs per image, input elements per image.
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "autoqnn/model.h"
#include "autoqnn/runtime.h"
#include "cli.h"

namespace autoqnn::cli {

static int run_layers(const std::vector<std::string>& args) {
  CommonOptions c;
  bool json = false;
  po::options_description desc("layers options");
  add_common_options(desc, c);
  desc.add_options()("json", po::bool_switch(&json), "print one JSON object on stdout");
  po::variables_map vm;
  if (!parse("layers", "--model NAME|PATH.pt [--dataset D | --input-shape C,H,W --num-classes K] [--json]", desc, args,
             vm))
    return 0;
  init_threads(c.threads);
  const ModelConfig cfg = c.model_config();
  auto model = make_model(c.model, cfg);
  const auto prof = profile_model(*model);
  int64_t params = 0, macs = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& p : prof) {
    params += p.params;
    macs += p.macs;
    layers.push_back({{"name", p.name}, {"kind", p.kind}, {"weight_shape", p.weight_shape}, {"params", p.params},
                      {"macs", p.macs}, {"input_shape", p.input_shape}, {"input_numel", p.input_numel}});
  }
  const nlohmann::json input = {cfg.in_channels, cfg.image_size, cfg.image_size};
  if (json) {
    std::cout << nlohmann::json{{"model", c.model}, {"input_shape", input}, {"num_classes", cfg.num_classes},
                                {"layers", layers}, {"quant_params", params}, {"macs", macs},
                                {"fingerprint", model_fingerprint(*model)}}
                     .dump()
              << std::endl;
    return 0;
  }
  std::cout << "model " << c.model << ", input " << cfg.in_channels << "x" << cfg.image_size << "x" << cfg.image_size
            << ", " << cfg.num_classes << " classes, " << prof.size() << " quantizable layers\n";
  std::cout << std::left << std::setw(28) << "layer" << std::setw(8) << "kind" << std::setw(20) << "weight shape"
            << std::right << std::setw(12) << "#weights" << std::setw(14) << "MACs/image" << "\n";
  for (const auto& p : prof) {
    std::string shape;
    for (size_t i = 0; i < p.weight_shape.size(); ++i) shape += (i ? "x" : "") + std::to_string(p.weight_shape[i]);
    std::cout << std::left << std::setw(28) << p.name << std::setw(8) << p.kind << std::setw(20) << shape << std::right
              << std::setw(12) << p.params << std::setw(14) << p.macs << "\n";
  }
  std::cout << std::left << std::setw(56) << "total" << std::right << std::setw(12) << params << std::setw(14) << macs
            << "\n";
  return 0;
}

AUTOQNN_VERB("layers", "list a model's quantizable layers (kind, shape, #weights, MACs per image)", run_layers);

}  // namespace autoqnn::cli
