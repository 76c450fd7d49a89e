// Fixtures shared by the search / QPL test files: a per-file temporary directory, error capture, and a
// briefly trained FP32 LeNet-5 checkpoint on the synthetic data set (so a search has a signal).
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>

#include "autoqnn/checkpoint.h"
#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "test_util.h"

namespace autoqnn_test {

inline const autoqnn::ModelConfig kSyntheticCfg{1, 28, 10};  // the synthetic dataset's shape

// AUTOQNN_TEST_TMP/<tag>_<pid>, emptied first (remove_tree: no std::filesystem directory walking).
inline std::string make_tmp_dir(const std::string& tag) {
  std::string p = std::string(AUTOQNN_TEST_TMP) + "/" + tag + "_" + std::to_string(::getpid());
  remove_tree(p);
  std::filesystem::create_directories(p);
  return p;
}

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Trains LeNet-5 for 2 epochs on 600 synthetic images (seed 0) and saves it as an FP32 checkpoint at `path`.
inline std::string train_synthetic_lenet5(const std::string& path) {
  using namespace autoqnn;
  torch::manual_seed(0);
  auto m = make_model("lenet5", kSyntheticCfg);
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = 600;
  Splits s = load_splits(d);
  torch::optim::SGD sgd(m->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  m->train();
  for (int e = 0; e < 2; ++e)
    for (int64_t i = 0; i + 50 <= s.full_train.size(); i += 50) {
      auto b = s.full_train.slice(i, i + 50);
      auto loss = torch::nn::functional::cross_entropy(m->forward(b.images), b.labels);
      sgd.zero_grad();
      loss.backward();
      sgd.step();
    }
  CheckpointMeta meta;
  meta.kind = "fp32";
  meta.model = "lenet5";
  meta.config = kSyntheticCfg;
  meta.dataset = "synthetic";
  save_checkpoint(path, *m, meta);
  return path;
}

}  // namespace autoqnn_test
