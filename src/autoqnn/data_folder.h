// --dataset folder:DIR: a user's images in the ImageFolder layout (internal to data.cpp, not installed API).
// DIR/train/<class>/*.png|jpg|jpeg + DIR/test/<class>/..., or one tree DIR/<class>/... split per class into
// train / test by DataOptions::val_fraction (seeded by split_seed, stratified, deterministic). Classes are
// the sorted subfolder names; images are decoded by image_io.h, converted to DataOptions::channels,
// resized (bilinear) to image_height x image_width and normalised with mean / stddev. docs/data.md.
#pragma once
#include <string>

#include "autoqnn/data.h"

namespace autoqnn::detail {

bool is_folder_dataset(const std::string& dataset);  // "folder:..."
// Scans the folder and reads every image's header (no pixels): shape, classes, mean / stddev.
DatasetInfo folder_dataset_info(const DataOptions& opt);
// Fills full (training) and test in a fixed shuffled order (split_seed); train_limit / test_limit cut them
// before decoding. Errors name the file or folder.
void load_folder_dataset(const DataOptions& opt, TensorDataset& full, TensorDataset& test);

}  // namespace autoqnn::detail
