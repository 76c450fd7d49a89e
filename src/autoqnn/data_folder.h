// --dataset folder:DIR: a user's images in the ImageFolder layout (docs/data.md).
// DIR/train/<class>/*.png|jpg|jpeg + DIR/test/<class>/..., or one tree DIR/<class>/... split per class into
// train / test by FolderOptions::val_fraction (seeded by split_seed, stratified, deterministic). Classes are
// the sorted subfolder names; images are decoded by image_io.h, converted to FolderOptions::channels,
// resized (bilinear) to image_height x image_width and normalised with mean / stddev.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autoqnn/data.h"

namespace autoqnn {

// How the images of a folder data set become tensors. 0 / empty = not given.
struct FolderOptions {
  int64_t image_height = 0, image_width = 0;  // --image-size: bilinear resize to H x W
  int64_t channels = 0;                       // --channels 1 | 3 (gray / RGB conversion; 0 = the images' own)
  std::vector<double> mean, stddev;           // --mean / --std per channel on [0, 1] (one value = every channel)
  double val_fraction = 0;                    // --val-fraction: test share of a one-tree folder (0 = 0.2)
  uint64_t split_seed = 0;                    // --split-seed: the one-tree split and the file order
};
// Process-wide, like the thread count: the CLI sets them once from its flags (CommonOptions::data_options),
// before any data set is read; every folder:DIR read in the process uses them. Checked when a folder is read.
void set_folder_options(const FolderOptions& opt);
const FolderOptions& folder_options();

bool is_folder_dataset(const std::string& dataset);  // "folder:..."
// The class names of folder:DIR (sorted subfolders of DIR/train, or of DIR), from the directory listing only.
std::vector<std::string> folder_class_names(const std::string& dataset);

namespace detail {
// Scans the folder and reads every image's header (no pixels): shape, classes, mean / stddev.
DatasetInfo folder_dataset_info(const std::string& dataset);
// Fills full (training) and test in a fixed shuffled order (split_seed); train_limit / test_limit cut them
// before decoding. Errors name the file or folder.
void load_folder_dataset(const DataOptions& opt, TensorDataset& full, TensorDataset& test);
}  // namespace detail

}  // namespace autoqnn
