// The QSS prior from a sensitivity table (`autoqnn analyze`, src/autoqnn/sensitivity.h): initial
// architecture logits that favour the candidates that hurt least when only their layer is quantized, so the
// search starts from the cheap-and-harmless corner instead of the uniform distribution
// (`search --init-from-sensitivity S.csv [--sensitivity-scale K]`).
//
//   theta[layer][w|a] = -K * max(drop, 0)          drop = top-1 loss as a fraction (0.05 = 5 points)
//   theta[layer][w|a] = -K * 10^(-SQNR/10)         tables made with --no-accuracy (relative error power)
//
// K = 20 maps a 5-point drop to a logit of -1 (e^-1 of the probability of a harmless candidate). Cost is
// deliberately not part of the prior: the budget penalty of the search handles it.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autoqnn/sensitivity.h"

namespace autoqnn::search {

// {layer: {"<weight spec>|<act spec>": logit}} (canonical spec text), the QssOptions::theta_init format.
// Throws std::invalid_argument naming the source and the row for a bad spec, a non-positive scale, or a
// duplicate (layer, weight, act).
nlohmann::json theta_prior_from_sensitivity(const std::vector<ptq::SensitivityRow>& rows, double scale,
                                            const std::string& source);

}  // namespace autoqnn::search
