// BatchNorm folding for post-training quantization: the BN that follows a conv is folded into the conv
// weight so the weight quantizer sees the weight inference uses,
//   W'_c = W_c * g_c,  g_c = gamma_c / sqrt(var_c + eps),   b'_c = beta_c + (b_c - mean_c) g_c,
// and the BN becomes a per-channel bias add (gamma = 1, running_mean = 0, running_var = 1 - eps,
// beta = b'_c; the conv's own bias, if any, is zeroed), so the module tree and checkpoints keep their
// layout and the float network computes the same function (up to float rounding). Pairs are found by
// name: "<prefix>conv<k>" with a sibling BatchNorm2d "<prefix>bn<k>" (every zoo model), or "<seq>.<i>"
// followed by a BatchNorm2d "<seq>.<i+1>" in a Sequential. docs/ptq.md.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autoqnn/model.h"

namespace autoqnn::ptq {

// The (conv, bn) name pairs that fold_batchnorm would fold.
std::vector<std::pair<std::string, std::string>> bn_fold_pairs(Model& model);
// Folds them (no gradient; BN must be in eval semantics: running statistics). Returns the pairs.
std::vector<std::pair<std::string, std::string>> fold_batchnorm(Model& model);

}  // namespace autoqnn::ptq
