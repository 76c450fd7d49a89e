// --dataset tensors:FILE.safetensors: a user's data set as tensors (internal to data.cpp, not installed API).
// `images` (uint8 on 0..255, or float32 used as is) N x C x H x W and `labels` int64 [N], optionally
// `test_images` / `test_labels`; without them the last 1/6 of the set is the test split.
#pragma once
#include <string>

#include "autoqnn/data.h"

namespace autoqnn::detail {

bool is_tensors_dataset(const std::string& dataset);  // "tensors:..."
// Shape and class count (max label + 1) from the file; mean 0 / stddev 1 (uint8 images are scaled to [0, 1]).
DatasetInfo tensors_dataset_info(const std::string& dataset);
// Fills full (training) and test; train_limit / test_limit cut them. Errors name the file and the tensor.
void load_tensors_dataset(const DataOptions& opt, TensorDataset& full, TensorDataset& test);

}  // namespace autoqnn::detail
