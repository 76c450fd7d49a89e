// --dataset tensors:FILE.safetensors (data_tensors.h): a user's images + labels as tensors.
#include <gtest/gtest.h>

#include "autoqnn/data.h"
#include "autoqnn/export.h"
#include "test_fixtures.h"

using namespace autoqnn;

namespace {
std::string write_set(const std::string& name, const std::map<std::string, torch::Tensor>& tensors) {
  static const std::string dir = autoqnn_test::make_tmp_dir("data_tensors");  // per process (ctest -j)
  const std::string path = dir + "/" + name;
  SafetensorsFile f;
  for (const auto& [k, t] : tensors) f.tensors[k] = to_safetensor(t);
  write_safetensors(path, f);
  return path;
}
std::string error_of(const std::string& dataset) {
  try {
    DataOptions d;
    d.dataset = dataset;
    load_splits(d);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(DataTensors, LoadsImagesLabelsAndTheTestSplit) {
  auto x = torch::arange(12 * 3 * 4 * 4).reshape({12, 3, 4, 4}).remainder(256).to(torch::kUInt8);
  auto y = torch::arange(12).remainder(5);
  const std::string p = write_set("set_a.safetensors", {{"images", x}, {"labels", y}});
  const auto info = dataset_info("tensors:" + p);
  EXPECT_EQ(info.channels, 3);
  EXPECT_EQ(info.height, 4);
  EXPECT_EQ(info.num_classes, 5);
  DataOptions d;
  d.dataset = "tensors:" + p;
  auto s = load_splits(d);
  ASSERT_EQ(s.full_train.size(), 10);  // the last 1/6 (2 images) is the test split
  ASSERT_EQ(s.test.size(), 2);
  EXPECT_EQ(s.val.size(), 1);
  EXPECT_FLOAT_EQ(s.test.images[1][2][3][3].item<float>(), x[11][2][3][3].item<float>() / 255.0f);
  EXPECT_EQ(s.test.labels[1].item<int64_t>(), 1);

  auto tx = torch::rand({3, 3, 4, 4});
  const std::string p2 =
      write_set("set_b.safetensors", {{"images", x}, {"labels", y}, {"test_images", tx}, {"test_labels", torch::full({3}, 7, torch::kInt64)}});
  d.dataset = "tensors:" + p2;
  s = load_splits(d);
  EXPECT_EQ(s.full_train.size(), 12);
  EXPECT_TRUE(s.test.images.equal(tx));
  EXPECT_EQ(dataset_info(d.dataset).num_classes, 8);
}

TEST(DataTensors, BadFilesAreNamed) {
  auto x = torch::zeros({4, 1, 4, 4}, torch::kUInt8);
  const std::string no_labels = write_set("no_labels.safetensors", {{"images", x}});
  EXPECT_NE(error_of("tensors:" + no_labels).find("no tensor 'labels'"), std::string::npos);
  EXPECT_NE(error_of("tensors:" + no_labels).find("no_labels.safetensors"), std::string::npos);
  const std::string count = write_set("count.safetensors", {{"images", x}, {"labels", torch::zeros({3}, torch::kInt64)}});
  EXPECT_NE(error_of("tensors:" + count).find("4 images but 'labels' 3 labels"), std::string::npos);
  const std::string neg = write_set("neg.safetensors", {{"images", x}, {"labels", torch::full({4}, -1, torch::kInt64)}});
  EXPECT_NE(error_of("tensors:" + neg).find("negative label"), std::string::npos);
  const std::string flat = write_set("flat.safetensors", {{"images", x.flatten(1)}, {"labels", torch::zeros({4}, torch::kInt64)}});
  EXPECT_NE(error_of("tensors:" + flat).find("N x C x H x W"), std::string::npos);
  EXPECT_NE(error_of("tensors:/nonexistent/x.safetensors").find("does not exist"), std::string::npos);
}
