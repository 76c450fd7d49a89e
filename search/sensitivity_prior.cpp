#include "search/sensitivity_prior.h"

#include <cmath>
#include <stdexcept>

#include "quantizers/registry.h"

namespace autoqnn::search {

nlohmann::json theta_prior_from_sensitivity(const std::vector<ptq::SensitivityRow>& rows, double scale,
                                            const std::string& source) {
  if (!(scale > 0) || !std::isfinite(scale))
    throw std::invalid_argument("--sensitivity-scale must be a positive number, got " + std::to_string(scale));
  if (rows.empty()) throw std::invalid_argument(source + ": the sensitivity table has no rows");
  // A table made with --no-accuracy has top1 = drop = 0 on every row: fall back to the SQNR.
  bool accuracy = false;
  for (const auto& r : rows) accuracy = accuracy || r.top1 != 0 || r.drop != 0;
  nlohmann::json prior = nlohmann::json::object();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    std::string key;
    try {
      key = quant::validate_spec(quant::QuantSpec::parse(r.weight), quant::Role::Weight).to_string() + "|" +
            quant::validate_spec(quant::QuantSpec::parse(r.act), quant::Role::Activation).to_string();
    } catch (const std::exception& e) {
      throw std::invalid_argument(source + ": row " + std::to_string(i + 1) + " (layer '" + r.layer + "'): " + e.what());
    }
    double v;
    if (accuracy) {
      v = -scale * std::max(r.drop, 0.0);
    } else {
      v = std::isinf(r.sqnr_db) && r.sqnr_db > 0 ? 0.0 : -scale * std::pow(10.0, -r.sqnr_db / 10.0);
      if (!std::isfinite(v)) v = -scale;  // SQNR = -inf / nan: the candidate destroys the layer
    }
    auto& layer = prior[r.layer];
    if (layer.contains(key))
      throw std::invalid_argument(source + ": layer '" + r.layer + "' lists candidate '" + key + "' twice");
    layer[key] = v;
  }
  return prior;
}

}  // namespace autoqnn::search
