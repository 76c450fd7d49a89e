// Data loading: IDX (plain / gzip / corrupt), CIFAR-10 binary, synthetic set, splits, BatchIterator.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"
#include "autoqnn/data.h"

namespace fs = std::filesystem;
using namespace autoqnn;

namespace {

// A fresh directory per test under the build tree's test tmp dir, removed when the test ends.
struct TestDir {
  std::string path;
  TestDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    fs::path d = fs::path(AUTOQNN_TEST_TMP) / ("data_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    autoqnn_test::remove_tree(fs::path(d).string());
    fs::create_directories(d);
    path = d.string();
  }
  ~TestDir() {
    std::error_code ec;
    autoqnn_test::remove_tree(path);
  }
};

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

// IDX images: magic 0x803, n, h, w, pixels (pixel k of image i = (i * 7 + k) % 256).
std::vector<uint8_t> idx_images(uint32_t n, uint32_t h, uint32_t w, uint32_t magic = 0x00000803) {
  std::vector<uint8_t> v;
  put_be32(v, magic);
  put_be32(v, n);
  put_be32(v, h);
  put_be32(v, w);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t k = 0; k < h * w; ++k) v.push_back(static_cast<uint8_t>((i * 7 + k) % 256));
  return v;
}

std::vector<uint8_t> idx_labels(uint32_t n, uint32_t magic = 0x00000801) {
  std::vector<uint8_t> v;
  put_be32(v, magic);
  put_be32(v, n);
  for (uint32_t i = 0; i < n; ++i) v.push_back(static_cast<uint8_t>(i % 10));
  return v;
}

void write_plain(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

// Expects std::runtime_error whose message names `path` (and contains `needle` when given).
void expect_error_naming(const std::function<void()>& fn, const std::string& path, const std::string& needle = "") {
  try {
    fn();
    ADD_FAILURE() << "no exception for " << path;
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    if (!needle.empty()) {
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  }
}

// A fake Fashion-MNIST directory: n_train / n_test images of 28x28, gzipped or plain.
void write_fake_fashion(const std::string& dir, uint32_t n_train, uint32_t n_test, bool gz) {
  auto w = [&](const std::string& name, const std::vector<uint8_t>& b) {
    if (gz) write_gzip(dir + "/" + name + ".gz", b);
    else write_plain(dir + "/" + name, b);
  };
  w("train-images-idx3-ubyte", idx_images(n_train, 28, 28));
  w("train-labels-idx1-ubyte", idx_labels(n_train));
  w("t10k-images-idx3-ubyte", idx_images(n_test, 28, 28));
  w("t10k-labels-idx1-ubyte", idx_labels(n_test));
}

}  // namespace

TEST(DataIdx, ReadsPlainAndGzip) {
  TestDir tmp;
  const std::string& dir = tmp.path;
  const auto bytes = idx_images(5, 3, 4);
  write_plain(dir + "/img", bytes);
  write_gzip(dir + "/img.gz", bytes);
  for (const auto& p : {dir + "/img", dir + "/img.gz"}) {
    auto t = read_idx_images(p);
    ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{5, 3, 4})) << p;
    EXPECT_EQ(t.scalar_type(), torch::kUInt8);
    EXPECT_EQ(t[2][1][3].item<int>(), (2 * 7 + 1 * 4 + 3) % 256);
  }
  write_plain(dir + "/lab", idx_labels(13));
  write_gzip(dir + "/lab.gz", idx_labels(13));
  for (const auto& p : {dir + "/lab", dir + "/lab.gz"}) {
    auto l = read_idx_labels(p);
    ASSERT_EQ(l.size(0), 13);
    EXPECT_EQ(l.scalar_type(), torch::kInt64);
    EXPECT_EQ(l[12].item<int64_t>(), 2);
  }
}

TEST(DataIdx, CorruptFilesNameTheFile) {
  TestDir tmp;
  const std::string& dir = tmp.path;
  // bad magic: a label file read as images, and garbage
  write_plain(dir + "/labels_as_images", idx_labels(4));
  expect_error_naming([&] { read_idx_images(dir + "/labels_as_images"); }, dir + "/labels_as_images", "magic");
  write_plain(dir + "/garbage", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  expect_error_naming([&] { read_idx_labels(dir + "/garbage"); }, dir + "/garbage", "magic");
  // truncated data, plain and gzip
  auto img = idx_images(4, 28, 28);
  img.resize(img.size() - 100);
  write_plain(dir + "/trunc", img);
  expect_error_naming([&] { read_idx_images(dir + "/trunc"); }, dir + "/trunc", "truncated");
  write_gzip(dir + "/trunc.gz", img);
  expect_error_naming([&] { read_idx_images(dir + "/trunc.gz"); }, dir + "/trunc.gz", "truncated");
  // truncated gzip stream itself
  write_gzip(dir + "/full.gz", idx_images(50, 28, 28));
  {
    std::ifstream f(dir + "/full.gz", std::ios::binary);
    std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    b.resize(b.size() / 2);
    std::ofstream o(dir + "/cut.gz", std::ios::binary);
    o.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  expect_error_naming([&] { read_idx_images(dir + "/cut.gz"); }, dir + "/cut.gz");
  // truncated header
  write_plain(dir + "/short", {0, 0, 8, 3, 0, 0});
  expect_error_naming([&] { read_idx_images(dir + "/short"); }, dir + "/short");
  // label out of range
  auto lab = idx_labels(6);
  lab.back() = 10;
  write_plain(dir + "/badlabel", lab);
  expect_error_naming([&] { read_idx_labels(dir + "/badlabel"); }, dir + "/badlabel", "label 10");
  // missing file: names it and the fix
  expect_error_naming([&] { read_idx_images(dir + "/nosuch"); }, dir + "/nosuch", "dataset-fashion-mnist");
}

TEST(DataIdx, LoadSplitsChecksCountsAndMissingFiles) {
  TestDir tmp;
  const std::string& dir = tmp.path;
  write_fake_fashion(dir, 60, 20, /*gz=*/true);
  write_gzip(dir + "/t10k-labels-idx1-ubyte.gz", idx_labels(19));  // mismatch with 20 images
  DataOptions o;
  o.data_dir = dir;
  expect_error_naming([&] { load_splits(o); }, dir + "/t10k-labels-idx1-ubyte.gz", "20 images");
  o.data_dir = dir + "/missing";
  expect_error_naming([&] { load_splits(o); }, dir + "/missing/train-images-idx3-ubyte.gz", "--data-dir");
}

TEST(DataIdx, FakeFashionSplits) {
  TestDir tmp;
  const std::string& dir = tmp.path;
  write_fake_fashion(dir, 60, 20, /*gz=*/false);  // plain files are found too
  DataOptions o;
  o.data_dir = dir;
  o.normalize = false;
  auto s = load_splits(o);
  ASSERT_EQ(s.full_train.size(), 60);
  EXPECT_EQ(s.train.size(), 50);
  EXPECT_EQ(s.val.size(), 10);
  EXPECT_EQ(s.test.size(), 20);
  EXPECT_EQ(s.full_train.images.sizes().vec(), (std::vector<int64_t>{60, 1, 28, 28}));
  EXPECT_FLOAT_EQ(s.full_train.images[3][0][0][5].item<float>(), ((3 * 7 + 5) % 256) / 255.f);
  EXPECT_TRUE(torch::equal(s.val.images, s.full_train.images.narrow(0, 50, 10)));
  o.normalize = true;
  o.train_limit = 30;
  o.test_limit = 7;
  auto n = load_splits(o);
  EXPECT_EQ(n.full_train.size(), 30);
  EXPECT_EQ(n.train.size(), 25);
  EXPECT_EQ(n.val.size(), 5);
  EXPECT_EQ(n.test.size(), 7);
  const auto info = dataset_info("fashion-mnist");
  EXPECT_NEAR(n.full_train.images[3][0][0][5].item<float>(), (((3 * 7 + 5) % 256) / 255.0 - info.mean[0]) / info.stddev[0],
              1e-5);
}

TEST(DataCifar, LoadsTinyBatchesAndValidates) {
  TestDir tmp;
  const std::string& dir = tmp.path;
  // 3 records in data_batch_1..5 and test_batch: label i % 10, pixel k = (i + k) % 256.
  auto batch = [](int n, int label_offset) {
    std::vector<uint8_t> v;
    for (int i = 0; i < n; ++i) {
      v.push_back(static_cast<uint8_t>((i + label_offset) % 10));
      for (int k = 0; k < 3072; ++k) v.push_back(static_cast<uint8_t>((i + k) % 256));
    }
    return v;
  };
  for (int b = 1; b <= 5; ++b) write_plain(dir + "/data_batch_" + std::to_string(b) + ".bin", batch(4, b));
  write_plain(dir + "/test_batch.bin", batch(3, 0));
  DataOptions o;
  o.dataset = "cifar10";
  o.data_dir = dir;
  o.normalize = false;
  auto s = load_splits(o);
  ASSERT_EQ(s.full_train.size(), 20);
  EXPECT_EQ(s.val.size(), 2);  // 1/10
  EXPECT_EQ(s.train.size(), 18);
  EXPECT_EQ(s.test.size(), 3);
  EXPECT_EQ(s.test.images.sizes().vec(), (std::vector<int64_t>{3, 3, 32, 32}));
  // record 1 of test: channel 1 (G) row 2 col 5 = pixel k = 1024 + 2*32 + 5
  EXPECT_FLOAT_EQ(s.test.images[1][1][2][5].item<float>(), ((1 + 1024 + 64 + 5) % 256) / 255.f);
  EXPECT_EQ(s.full_train.labels[4].item<int64_t>(), 2);  // batch 2, record 0
  // corrupt: size not a multiple of 3073, label out of range
  auto bad = batch(2, 0);
  bad.pop_back();
  write_plain(dir + "/test_batch.bin", bad);
  expect_error_naming([&] { load_splits(o); }, dir + "/test_batch.bin", "3073");
  bad = batch(2, 0);
  bad[3073] = 11;
  write_plain(dir + "/test_batch.bin", bad);
  expect_error_naming([&] { load_splits(o); }, dir + "/test_batch.bin", "label 11");
  fs::remove(dir + "/data_batch_3.bin");
  expect_error_naming([&] { load_splits(o); }, dir + "/data_batch_3.bin", "--data-dir");
  o.train_limit = 8;  // only batches 1-2 are needed
  EXPECT_EQ(read_cifar10({dir + "/data_batch_1.bin", dir + "/data_batch_2.bin", dir + "/data_batch_3.bin"}, false, 8)
                .size(),
            8);
}

TEST(DataSynthetic, DeterministicDisjointSplits) {
  DataOptions o;
  o.dataset = "synthetic";
  o.seed = 3;
  auto a = load_splits(o), b = load_splits(o);
  EXPECT_EQ(a.full_train.size(), 6000);
  EXPECT_EQ(a.train.size(), 5000);
  EXPECT_EQ(a.val.size(), 1000);
  EXPECT_EQ(a.test.size(), 1000);
  EXPECT_EQ(a.train.images.sizes().vec(), (std::vector<int64_t>{5000, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(a.full_train.images, b.full_train.images));
  EXPECT_TRUE(torch::equal(a.test.labels, b.test.labels));
  // train and val are disjoint consecutive parts of full_train
  EXPECT_TRUE(torch::equal(a.train.images, a.full_train.images.narrow(0, 0, 5000)));
  EXPECT_TRUE(torch::equal(a.val.images, a.full_train.images.narrow(0, 5000, 1000)));
  EXPECT_FALSE(torch::equal(a.val.images.narrow(0, 0, 100), a.train.images.narrow(0, 0, 100)));
  // every class present, normalised statistics near 0 / 1
  EXPECT_EQ(a.train.labels.bincount().gt(300).sum().item<int64_t>(), 10);
  EXPECT_NEAR(a.train.images.mean().item<double>(), 0.0, 0.1);
  EXPECT_NEAR(a.train.images.std().item<double>(), 1.0, 0.1);
  // another seed differs; a limit is a deterministic prefix with the same 1/6 split
  o.seed = 4;
  EXPECT_FALSE(torch::equal(load_splits(o).full_train.images, a.full_train.images));
  o.seed = 3;
  o.train_limit = 600;
  auto c = load_splits(o);
  EXPECT_EQ(c.train.size(), 500);
  EXPECT_EQ(c.val.size(), 100);
  EXPECT_TRUE(torch::equal(c.full_train.images, a.full_train.images.narrow(0, 0, 600)));
  EXPECT_THROW(dataset_info("mnist3d"), std::invalid_argument);
}

TEST(DataBatchIterator, DeterministicPerEpoch) {
  DataOptions o;
  o.dataset = "synthetic";
  o.train_limit = 300;
  auto s = load_splits(o);
  auto epoch_labels = [&](uint64_t seed, int64_t epoch, AugmentOptions aug = {}) {
    BatchIterator it(s.train, 64, /*shuffle=*/true, seed, aug);
    it.start_epoch(epoch);
    std::vector<torch::Tensor> xs, ys;
    torch::Tensor x, y;
    while (it.next(x, y)) {
      xs.push_back(x);
      ys.push_back(y);
    }
    return std::make_pair(torch::cat(xs), torch::cat(ys));
  };
  BatchIterator it(s.train, 64, true, 1);
  EXPECT_EQ(it.num_batches(), 4);  // 250 -> 64, 64, 64, 58
  auto [x1, y1] = epoch_labels(1, 2);
  auto [x2, y2] = epoch_labels(1, 2);
  auto [x3, y3] = epoch_labels(1, 3);
  auto [x4, y4] = epoch_labels(2, 2);
  EXPECT_EQ(y1.size(0), 250);
  EXPECT_TRUE(torch::equal(x1, x2));
  EXPECT_TRUE(torch::equal(y1, y2));
  EXPECT_FALSE(torch::equal(y1, y3));
  EXPECT_FALSE(torch::equal(y1, y4));
  // a permutation: same multiset of labels as the data
  EXPECT_TRUE(torch::equal(std::get<0>(y1.sort()), std::get<0>(s.train.labels.sort())));
  // no shuffle: data order; drop_last
  BatchIterator plain(s.train, 100, false, 0, {}, /*drop_last=*/true);
  EXPECT_EQ(plain.num_batches(), 2);
  torch::Tensor x, y;
  int n = 0;
  while (plain.next(x, y)) {
    EXPECT_TRUE(torch::equal(x, s.train.images.narrow(0, 100 * n, 100)));
    ++n;
  }
  EXPECT_EQ(n, 2);
  plain.start_epoch(1);
  EXPECT_TRUE(plain.next(x, y));
}

TEST(DataBatchIterator, AugmentationCropAndFlip) {
  // 2 images 1x4x4 with distinct pixel values, checked against a reference crop / flip.
  TensorDataset ds{torch::arange(1, 33, torch::kFloat32).view({2, 1, 4, 4}), torch::tensor({0, 1}, torch::kInt64)};
  AugmentOptions flip_only;
  flip_only.hflip = true;
  int flipped = 0;
  for (int64_t e = 0; e < 20; ++e) {
    BatchIterator it(ds, 2, false, 5, flip_only);
    it.start_epoch(e);
    torch::Tensor x, y;
    ASSERT_TRUE(it.next(x, y));
    for (int i = 0; i < 2; ++i) {
      const bool same = torch::equal(x[i], ds.images[i]), mirrored = torch::equal(x[i], ds.images[i].flip({2}));
      EXPECT_TRUE(same || mirrored);
      flipped += mirrored;
    }
  }
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);

  AugmentOptions crop;
  crop.crop_padding = 2;
  crop.hflip = true;
  for (int64_t e = 0; e < 10; ++e) {
    BatchIterator it(ds, 2, false, 9, crop), again(ds, 2, false, 9, crop);
    it.start_epoch(e);
    again.start_epoch(e);
    torch::Tensor x, y, x2, y2;
    ASSERT_TRUE(it.next(x, y));
    ASSERT_TRUE(again.next(x2, y2));
    EXPECT_TRUE(torch::equal(x, x2));
    // x[i] must equal some crop (dy, dx) of the zero-padded image, possibly flipped
    for (int i = 0; i < 2; ++i) {
      auto padded = torch::constant_pad_nd(ds.images[i], {2, 2, 2, 2}, 0);
      bool found = false;
      for (int dy = 0; dy <= 4 && !found; ++dy)
        for (int dx = 0; dx <= 4 && !found; ++dx) {
          auto c = padded.narrow(1, dy, 4).narrow(2, dx, 4);
          found = torch::equal(x[i], c) || torch::equal(x[i], c.flip({2}));
        }
      EXPECT_TRUE(found) << "epoch " << e << " image " << i;
    }
  }
}

TEST(DataFashionMnist, RealDatasetLoads) {
  const std::string dir = default_data_dir("fashion-mnist");
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz") && !fs::exists(dir + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << dir << " missing (Debian package dataset-fashion-mnist)";
  DataOptions o;
  o.normalize = false;
  auto s = load_splits(o);
  EXPECT_EQ(s.full_train.size(), 60000);
  EXPECT_EQ(s.train.size(), 50000);
  EXPECT_EQ(s.val.size(), 10000);
  EXPECT_EQ(s.test.size(), 10000);
  EXPECT_EQ(s.test.images.sizes().vec(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_NEAR(s.full_train.images.mean().item<double>(), 0.2860, 0.002);
  EXPECT_NEAR(s.full_train.images.std().item<double>(), 0.3530, 0.002);
  EXPECT_TRUE(torch::equal(s.full_train.labels.bincount(), torch::full({10}, 6000, torch::kInt64)));
  EXPECT_TRUE(torch::equal(s.test.labels.bincount(), torch::full({10}, 1000, torch::kInt64)));
}
