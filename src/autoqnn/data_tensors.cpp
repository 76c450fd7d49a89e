#include "autoqnn/data_tensors.h"

#include <algorithm>
#include <sstream>

#include "autoqnn/export.h"
#include "autoqnn/runtime.h"

namespace autoqnn::detail {

namespace {

std::string path_of(const std::string& dataset) { return dataset.substr(std::string("tensors:").size()); }

struct RawSet {
  torch::Tensor images, labels, test_images, test_labels;  // test_* undefined when absent
};

RawSet read_set(const std::string& dataset) {
  const std::string path = path_of(dataset);
  if (path.empty()) throw std::invalid_argument("--dataset tensors:FILE.safetensors: no file given");
  if (!file_exists(path)) throw std::runtime_error("data set '" + path + "' does not exist");
  SafetensorsFile f;
  try {
    f = read_safetensors(path);
  } catch (const std::exception& e) {
    throw std::runtime_error("data set '" + path + "' is not a readable safetensors file (" + e.what() + ")");
  }
  auto get = [&](const std::string& key, bool required) -> torch::Tensor {
    auto it = f.tensors.find(key);
    if (it == f.tensors.end()) {
      if (required) throw std::runtime_error("data set '" + path + "' has no tensor '" + key + "' (needs images, labels)");
      return {};
    }
    return from_safetensor(it->second);
  };
  RawSet r{get("images", true), get("labels", true), get("test_images", false), get("test_labels", false)};
  if (r.test_images.defined() != r.test_labels.defined())
    throw std::runtime_error("data set '" + path + "': test_images and test_labels go together");
  auto check = [&](const torch::Tensor& x, const torch::Tensor& y, const std::string& xn, const std::string& yn) {
    if (x.dim() != 4)
      throw std::runtime_error("data set '" + path + "': '" + xn + "' must be N x C x H x W, has " +
                               std::to_string(x.dim()) + " dimensions");
    if (x.scalar_type() != torch::kUInt8 && x.scalar_type() != torch::kFloat32)
      throw std::runtime_error("data set '" + path + "': '" + xn + "' must be uint8 (U8) or float32 (F32)");
    if (y.dim() != 1 || y.scalar_type() != torch::kInt64)
      throw std::runtime_error("data set '" + path + "': '" + yn + "' must be int64 (I64) of shape [N]");
    if (y.size(0) != x.size(0))
      throw std::runtime_error("data set '" + path + "': '" + xn + "' holds " + std::to_string(x.size(0)) +
                               " images but '" + yn + "' " + std::to_string(y.size(0)) + " labels");
    if (y.numel() > 0 && y.min().item<int64_t>() < 0)
      throw std::runtime_error("data set '" + path + "': '" + yn + "' has a negative label");
  };
  check(r.images, r.labels, "images", "labels");
  if (r.test_images.defined()) {
    check(r.test_images, r.test_labels, "test_images", "test_labels");
    if (r.test_images.sizes().slice(1) != r.images.sizes().slice(1))
      throw std::runtime_error("data set '" + path + "': test_images and images differ in C x H x W");
  }
  if (r.images.size(2) != r.images.size(3))
    throw std::runtime_error("data set '" + path + "': images are " + std::to_string(r.images.size(2)) + "x" +
                             std::to_string(r.images.size(3)) + "; only square images are supported");
  return r;
}

torch::Tensor to_float(const torch::Tensor& x) {
  return x.scalar_type() == torch::kUInt8 ? x.to(torch::kFloat32).div_(255.0) : x.to(torch::kFloat32);
}

}  // namespace

bool is_tensors_dataset(const std::string& dataset) { return dataset.rfind("tensors:", 0) == 0; }

DatasetInfo tensors_dataset_info(const std::string& dataset) {
  auto r = read_set(dataset);
  int64_t classes = r.labels.numel() ? r.labels.max().item<int64_t>() + 1 : 1;
  if (r.test_labels.defined() && r.test_labels.numel())
    classes = std::max(classes, r.test_labels.max().item<int64_t>() + 1);
  return {r.images.size(1), r.images.size(2), r.images.size(3), classes, {0.0, 0.0, 0.0}, {1.0, 1.0, 1.0}};
}

void load_tensors_dataset(const DataOptions& opt, TensorDataset& full, TensorDataset& test) {
  auto r = read_set(opt.dataset);
  torch::Tensor x = to_float(r.images), y = r.labels;
  if (r.test_images.defined()) {
    full = {x, y};
    test = {to_float(r.test_images), r.test_labels};
  } else {
    const int64_t n = x.size(0), ntest = n / 6;
    full = {x.narrow(0, 0, n - ntest).contiguous(), y.narrow(0, 0, n - ntest).contiguous()};
    test = {x.narrow(0, n - ntest, ntest).contiguous(), y.narrow(0, n - ntest, ntest).contiguous()};
  }
  if (opt.train_limit > 0) full = full.head(opt.train_limit);
  if (opt.test_limit > 0) test = test.head(opt.test_limit);
  if (full.size() == 0) throw std::runtime_error("data set '" + path_of(opt.dataset) + "' has no training images");
}

}  // namespace autoqnn::detail
