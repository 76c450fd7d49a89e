// Class names in checkpoints: a checkpoint of a model trained on a folder data set (data_folder.h) records
// the folder's classes in its metadata (config.classes, written by save_checkpoint).
#pragma once
#include <string>
#include <vector>

namespace autoqnn {

// The recorded class names in label order; empty when the checkpoint has none (other data sets, older
// files, a TorchScript file). Throws like read_checkpoint_meta for a missing or corrupt file.
std::vector<std::string> read_checkpoint_classes(const std::string& path);

}  // namespace autoqnn
