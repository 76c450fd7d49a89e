// autoqnn models / autoqnn quantizers: what the zoo and the scheme table hold.
#include <iomanip>
#include <iostream>

#include "autoqnn/model.h"
#include "cli.h"
#include "quantizers/registry.h"

namespace autoqnn::cli {

static int run_models(const std::vector<std::string>& args) {
  po::options_description desc("models options");
  po::variables_map vm;
  if (!parse("models", "", desc, args, vm)) return 0;
  std::cout << std::left << std::setw(14) << "model" << std::right << std::setw(12) << "params 1x28"
            << std::setw(12) << "params 3x32" << std::setw(8) << "qlayers" << "  description\n";
  for (const auto& info : model_zoo()) {
    auto a = make_model(info.name, ModelConfig{1, 28, 10});
    auto b = make_model(info.name, ModelConfig{3, 32, 10});
    std::cout << std::left << std::setw(14) << info.name << std::right << std::setw(12) << count_parameters(*a)
              << std::setw(12) << count_parameters(*b) << std::setw(8) << quant_layers(*a).size() << "  "
              << info.description << "\n";
  }
  return 0;
}

static int run_quantizers(const std::vector<std::string>& args) {
  po::options_description desc("quantizers options");
  po::variables_map vm;
  if (!parse("quantizers", "", desc, args, vm)) return 0;
  std::cout << std::left << std::setw(9) << "scheme" << std::setw(8) << "bits" << std::setw(8) << "default"
            << std::setw(8) << "signed" << std::setw(8) << "use" << "summary / parameters\n";
  for (const auto& t : quant::scheme_table()) {
    std::string bits = std::to_string(t.min_bits) + (t.max_bits != t.min_bits ? ".." + std::to_string(t.max_bits) : "");
    std::string use = std::string(t.weight_ok ? "W" : "") + (t.act_ok ? (t.weight_ok ? "+A" : "A") : "");
    std::cout << std::left << std::setw(9) << t.name << std::setw(8) << bits << std::setw(8) << t.default_bits
              << std::setw(8) << (t.is_signed ? "yes" : "no") << std::setw(8) << use << t.summary << "\n";
    if (t.params && *t.params) std::cout << std::string(41, ' ') << "params: " << t.params << "\n";
  }
  std::cout << "\ncommon parameters: grad=ste|pwl|pwl_c (backward rule), r=<0..1> (PWL gradient ratio), "
               "per_channel, axis=<n>, momentum=<0..1> (activation EMA)\n"
               "spec strings: scheme[:bits][:key=value|:flag]..., e.g. fixed:4, esb:4:k=1, uniform:8:per_channel, fp32\n";
  return 0;
}

AUTOQNN_VERB("models", "list the model zoo with parameter counts", run_models);
AUTOQNN_VERB("quantizers", "list every quantization scheme with its valid bits and parameters", run_quantizers);

}  // namespace autoqnn::cli
