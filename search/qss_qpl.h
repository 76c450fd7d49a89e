// Method "qss+qpl": two searches in a row. Stage 1 = QSS at the budget chooses every layer's scheme (policy
// <out>.qss.json, state <state>.qss..., log <log>.qss.csv); stage 2 = QPL from the FP32 checkpoint with
// those schemes learns their bits (state = opt.state, log = opt.log). The final policy (opt.out) carries the
// QPL stage's provenance with method "qss+qpl" and both stages' provenance under "stages". --resume resumes
// whichever stage is unfinished.
#pragma once
#include "search/qpl.h"
#include "search/qss.h"
#include "search/search_driver.h"

namespace autoqnn::search {

struct QssQplOptions : StrategyOptions {
  QssOptions qss;
  QplOptions qpl;  // bit range, init, sigma (the schemes come from the QSS stage); bit_lr = stage 2's rate
  static QssQplOptions from_json(const nlohmann::json& j);
  nlohmann::json to_json() const override;  // {"qss": {...}, "qpl": {...}}
};

// Stage 2 runs with the bit optimiser `bit_opt` (stage 1 with opt.arch).
SearchResult run_qss_qpl(const SearchOptions& opt, const ArchAdamOptions& bit_opt);
// Paths of the QSS stage of a qss+qpl search.
std::string qss_stage_path(const std::string& path, const std::string& ext);

// The method row of "qss+qpl" (search_method.h).
SearchMethod qss_qpl_method();

}  // namespace autoqnn::search
