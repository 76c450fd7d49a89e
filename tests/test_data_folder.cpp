// --dataset folder:DIR (data_folder.h, image_io.h): image folders written here with libpng / libjpeg.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <nlohmann/json.hpp>

#include "autoqnn/checkpoint.h"
#include "autoqnn/checkpoint_classes.h"
#include "autoqnn/data.h"
#include "autoqnn/data_folder.h"
#include "autoqnn/image_io.h"
#include "test_fixtures.h"
#include "test_util.h"

using namespace autoqnn;
using autoqnn_test::contains;
using autoqnn_test::error_of;
namespace fs = std::filesystem;

namespace {

#define SKIP_WITHOUT_IMAGES() \
  if (!image_decoding_available()) GTEST_SKIP() << no_image_decoding_message()

std::string tmp(const std::string& tag) { return autoqnn_test::make_tmp_dir("data_folder_" + tag); }

// A gray image whose pixels are (base + 7 y + 3 x) mod 256: every image of a test is told apart by `base`.
Image gray(int64_t h, int64_t w, int base) {
  Image img{h, w, 1, std::vector<uint8_t>(static_cast<size_t>(h * w))};
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) img.pixels[y * w + x] = static_cast<uint8_t>((base + 7 * y + 3 * x) % 256);
  return img;
}

Image rgb(int64_t h, int64_t w, uint8_t r, uint8_t g, uint8_t b) {
  Image img{h, w, 3, {}};
  for (int64_t i = 0; i < h * w; ++i) img.pixels.insert(img.pixels.end(), {r, g, b});
  return img;
}

void put_png(const std::string& dir, const std::string& name, const Image& img) {
  fs::create_directories(dir);
  write_png(dir + "/" + name, img);
}

DataOptions folder_opts(const std::string& dir) {
  DataOptions d;
  d.dataset = "folder:" + dir;
  return d;
}
// Loads folder:DIR with these folder options (process-wide: reset to the defaults afterwards).
Splits load(const std::string& dir, const FolderOptions& o = {}) {
  set_folder_options(o);
  struct Reset {
    ~Reset() { set_folder_options({}); }
  } reset;
  return load_splits(folder_opts(dir));
}
DatasetInfo info_of(const std::string& dir, const FolderOptions& o = {}) {
  set_folder_options(o);
  struct Reset {
    ~Reset() { set_folder_options({}); }
  } reset;
  return dataset_info("folder:" + dir);
}
std::string load_error(const std::string& dir, const FolderOptions& o = {}) {
  return error_of([&] { load(dir, o); });
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST(DataFolder, PngPixelsAreExactAndClassesSorted) {
  SKIP_WITHOUT_IMAGES();
  const std::string dir = tmp("png");
  const std::vector<std::string> names = {"zebra", "ant", "moth"};  // sorted: ant, moth, zebra
  for (size_t c = 0; c < names.size(); ++c)
    for (int k = 0; k < 4; ++k) {
      const int base = 40 * int(c) + k;  // names[c] holds bases 40c .. 40c+3
      put_png(dir + "/" + (k < 3 ? "train/" : "test/") + names[c], "im" + std::to_string(k) + ".png", gray(5, 5, base));
    }
  const auto info = info_of(dir);
  EXPECT_EQ(folder_class_names("folder:" + dir), (std::vector<std::string>{"ant", "moth", "zebra"}));
  EXPECT_EQ(info.num_classes, 3);
  EXPECT_EQ(info.channels, 1);
  EXPECT_EQ(info.height, 5);
  auto s = load(dir);
  ASSERT_EQ(s.full_train.size(), 9);
  ASSERT_EQ(s.test.size(), 3);
  EXPECT_EQ(s.val.size(), 1);  // the last 1/6 of the training set
  const std::map<std::string, int64_t> label_of = {{"ant", 0}, {"moth", 1}, {"zebra", 2}};
  for (const auto* set : {&s.full_train, &s.test})
    for (int64_t i = 0; i < set->size(); ++i) {
      const int base = static_cast<int>(std::lround(set->images[i][0][0][0].item<float>() * 255));
      const int64_t c = base / 40;  // index in `names`
      EXPECT_EQ(set->labels[i].item<int64_t>(), label_of.at(names[c]));
      auto want = torch::empty({5, 5});
      for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 5; ++x) want[y][x] = static_cast<float>((base + 7 * y + 3 * x) % 256) / 255.0f;
      EXPECT_TRUE(torch::equal(set->images[i][0], want)) << "image with base " << base;
    }
  std::set<int64_t> test_labels;
  for (int64_t i = 0; i < 3; ++i) test_labels.insert(s.test.labels[i].item<int64_t>());
  EXPECT_EQ(test_labels, (std::set<int64_t>{0, 1, 2}));
}

TEST(DataFolder, JpegWithinToleranceAndRgbToGray) {
  SKIP_WITHOUT_IMAGES();
  const std::string dir = tmp("jpeg");
  Image smooth{16, 16, 3, {}};
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) smooth.pixels.insert(smooth.pixels.end(), {uint8_t(60 + 8 * x), uint8_t(50 + 6 * y), uint8_t(128)});
  for (const std::string c : {"a", "b"})
    for (int k = 0; k < 2; ++k) {
      fs::create_directories(dir + "/" + c);
      write_jpeg(dir + "/" + c + "/x" + std::to_string(k) + ".JPG", smooth, 95);
    }
  const Image back = read_image(dir + "/a/x0.JPG");
  ASSERT_EQ(back.channels, 3);
  int worst = 0;
  for (size_t i = 0; i < back.pixels.size(); ++i) worst = std::max(worst, std::abs(int(back.pixels[i]) - int(smooth.pixels[i])));
  EXPECT_LE(worst, 12) << "JPEG quality 95 of a smooth ramp (4:2:0 chroma)";
  EXPECT_GT(worst, 0) << "JPEG is lossy: an exact copy means the file was not JPEG-coded";

  FolderOptions half;
  half.val_fraction = 0.5;
  auto s = load(dir, half);
  ASSERT_EQ(s.test.images.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
  EXPECT_NEAR(s.test.images[0][0][3][5].item<float>(), (60 + 8 * 5) / 255.0f, 12 / 255.0f);

  // RGB -> gray: ITU-R BT.601 luma of the decoded pixels (PNG: exact).
  const std::string dir2 = tmp("gray");
  for (const std::string c : {"a", "b"})
    for (int k = 0; k < 2; ++k) put_png(dir2 + "/" + c, "p" + std::to_string(k) + ".png", rgb(3, 3, 200, 100, 50));
  FolderOptions g;
  g.channels = 1;
  auto sg = load(dir2, g);
  ASSERT_EQ(sg.test.images.size(1), 1);
  EXPECT_NEAR(sg.test.images[0][0][1][1].item<float>(), (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255.0, 1e-6);
  // gray -> RGB: the value in every channel
  const std::string dir3 = tmp("rgb");
  for (const std::string c : {"a", "b"})
    for (int k = 0; k < 2; ++k) put_png(dir3 + "/" + c, "p" + std::to_string(k) + ".png", gray(3, 3, 90));
  FolderOptions r;
  r.channels = 3;
  auto sr = load(dir3, r);
  ASSERT_EQ(sr.test.images.size(1), 3);
  for (int ch = 0; ch < 3; ++ch) EXPECT_FLOAT_EQ(sr.test.images[0][ch][2][1].item<float>(), (90 + 14 + 3) / 255.0f);
}

TEST(DataFolder, SeededStratifiedSplitAndNormalisation) {
  SKIP_WITHOUT_IMAGES();
  const std::string dir = tmp("split");
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 10; ++k) put_png(dir + "/class" + std::to_string(c), "i" + std::to_string(k) + ".png", gray(4, 4, 50 * c + k));
  FolderOptions d;
  d.val_fraction = 0.3;
  auto a = load(dir, d), b = load(dir, d);
  ASSERT_EQ(a.test.size(), 9);  // 3 of every 10 per class
  ASSERT_EQ(a.full_train.size(), 21);
  EXPECT_EQ(a.train.size() + a.val.size(), 21);
  for (int c = 0; c < 3; ++c) EXPECT_EQ((a.test.labels == c).sum().item<int64_t>(), 3);
  EXPECT_TRUE(torch::equal(a.test.images, b.test.images));
  EXPECT_TRUE(torch::equal(a.full_train.images, b.full_train.images));
  d.split_seed = 7;
  auto other = load(dir, d);
  auto members = [](const TensorDataset& t) { return std::get<0>(t.images.flatten(1).sum(1).sort()); };  // images differ
  EXPECT_FALSE(torch::equal(members(other.test), members(a.test)))
      << "another --split-seed picks other test images";
  d.val_fraction = 0;  // default 0.2: 2 of 10
  EXPECT_EQ(load(dir, d).test.size(), 6);

  // Normalisation: (x / 255 - mean) / std, one value for every channel.
  d.mean = {0.5};
  d.stddev = {0.25};
  auto n = load(dir, d);
  auto raw = d;
  raw.mean.clear();
  raw.stddev.clear();
  auto r = load(dir, raw);
  EXPECT_TRUE(torch::allclose(n.test.images, (r.test.images - 0.5) / 0.25, 1e-6, 1e-6));
  EXPECT_DOUBLE_EQ(info_of(dir, d).mean[0], 0.5);
  EXPECT_DOUBLE_EQ(info_of(dir, d).stddev[0], 0.25);
  d.mean = {0.5, 0.5};
  EXPECT_TRUE(contains(load_error(dir, d), "--mean has 2 values; the images have 1 channels"));
}

TEST(DataFolder, ResizeIsBilinearAndMixedSizesNeedIt) {
  SKIP_WITHOUT_IMAGES();
  const std::string dir = tmp("resize");
  Image two{2, 2, 1, {0, 255, 0, 255}};  // left column 0, right column 255
  put_png(dir + "/train/a", "small.png", two);
  put_png(dir + "/train/a", "big.png", gray(6, 6, 3));
  put_png(dir + "/test/a", "t.png", two);
  FolderOptions d;
  const std::string err = load_error(dir, d);
  EXPECT_TRUE(contains(err, "images differ in size")) << err;
  EXPECT_TRUE(contains(err, dir + "/train/a/big.png")) << err;
  EXPECT_TRUE(contains(err, dir + "/train/a/small.png")) << err;
  EXPECT_TRUE(contains(err, "--image-size")) << err;
  d.image_height = d.image_width = 4;
  auto s = load(dir, d);
  ASSERT_EQ(s.test.images.sizes(), (std::vector<int64_t>{1, 1, 4, 4}));
  // align_corners = false: output x samples input (x + 0.5) / 2 - 0.5 -> weights 0, 0.25, 0.75, 1.
  const std::vector<float> want = {0.0f, 0.25f, 0.75f, 1.0f};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) EXPECT_NEAR(s.test.images[0][0][y][x].item<float>(), want[x], 1e-6);
  EXPECT_EQ(info_of(dir, d).height, 4);
}

TEST(DataFolder, BadFoldersAndImagesAreNamed) {
  SKIP_WITHOUT_IMAGES();
  const std::string dir = tmp("bad");
  auto good_tree = [&](const std::string& root) {
    for (const std::string c : {"cat", "dog"})
      for (int k = 0; k < 3; ++k) put_png(root + "/" + c, "g" + std::to_string(k) + ".png", gray(4, 4, k));
  };
  auto err = [&](const std::string& root, double vf = 0) {
    FolderOptions d;
    d.val_fraction = vf;
    return load_error(root, d);
  };
  // a text file with an image extension
  good_tree(dir + "/text");
  write_text(dir + "/text/dog/notes.png", "not an image\n");
  EXPECT_TRUE(contains(err(dir + "/text"), "image '" + dir + "/text/dog/notes.png' is not a PNG or JPEG file"));
  // corrupt: the PNG signature, then garbage
  good_tree(dir + "/corrupt");
  write_text(dir + "/corrupt/cat/c.png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(40, 'x'));
  EXPECT_TRUE(contains(err(dir + "/corrupt"), "image '" + dir + "/corrupt/cat/c.png': corrupt PNG"));
  // truncated PNG and JPEG: the header reads, the pixels do not
  good_tree(dir + "/trunc");
  Image big = gray(64, 64, 5);
  for (size_t i = 0; i < big.pixels.size(); ++i) big.pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  write_png(dir + "/t_full.png", big);
  std::string bytes;
  {
    std::ifstream f(dir + "/t_full.png", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  write_text(dir + "/trunc/cat/t.png", bytes.substr(0, bytes.size() / 2));
  FolderOptions d;
  d.image_height = d.image_width = 4;
  const std::string e1 = load_error(dir + "/trunc", d);
  EXPECT_TRUE(contains(e1, "image '" + dir + "/trunc/cat/t.png': corrupt or truncated PNG")) << e1;
  good_tree(dir + "/truncj");
  Image noisy{32, 32, 3, std::vector<uint8_t>(32 * 32 * 3)};
  for (size_t i = 0; i < noisy.pixels.size(); ++i) noisy.pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 11);
  write_jpeg(dir + "/j_full.jpg", noisy);
  {
    std::ifstream f(dir + "/j_full.jpg", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  write_text(dir + "/truncj/dog/j.jpg", bytes.substr(0, bytes.size() * 6 / 10));
  FolderOptions dj;
  dj.image_height = dj.image_width = 4;
  dj.channels = 1;
  const std::string e2 = load_error(dir + "/truncj", dj);
  EXPECT_TRUE(contains(e2, "image '" + dir + "/truncj/dog/j.jpg': corrupt or truncated JPEG")) << e2;
  // an empty class folder, no class folders, train/ without test/, test classes != train classes
  good_tree(dir + "/empty");
  fs::create_directories(dir + "/empty/emu");
  write_text(dir + "/empty/emu/readme.txt", "no images here\n");
  EXPECT_TRUE(contains(err(dir + "/empty"), "class folder '" + dir + "/empty/emu' holds no .png / .jpg / .jpeg image"));
  fs::create_directories(dir + "/none");
  EXPECT_TRUE(contains(err(dir + "/none"), "folder data set '" + dir + "/none' has no class folders"));
  good_tree(dir + "/half/train");
  EXPECT_TRUE(contains(err(dir + "/half"), "has 'train/' but no 'test/'"));
  good_tree(dir + "/diff/train");
  put_png(dir + "/diff/test/cat", "x.png", gray(4, 4, 1));
  put_png(dir + "/diff/test/cow", "x.png", gray(4, 4, 1));
  EXPECT_TRUE(contains(err(dir + "/diff"), "the classes of test/ (cat, cow) differ from those of train/ (cat, dog)"));
  // --val-fraction outside (0, 1), or with a train/ test/ layout
  good_tree(dir + "/ok");
  EXPECT_TRUE(contains(err(dir + "/ok", 1.0), "--val-fraction must be inside (0, 1)"));
  EXPECT_TRUE(contains(err(dir + "/ok", -0.1), "--val-fraction must be inside (0, 1)"));
  EXPECT_TRUE(contains(err(dir + "/diff", 0.5), "already has train/ and test/"));
  EXPECT_TRUE(contains(err(dir + "/missing"), "folder data set '" + dir + "/missing' is not a directory"));
  EXPECT_EQ(load(dir + "/ok").full_train.size(), 4);  // 1 of 3 per class to test
}

// The CLI: a short training run on a separable folder learns it; the class names travel with the
// checkpoint and the policy, and the model / data mismatches are refused before anything is written.
TEST(DataFolder, CliTrainsOnAFolderAndRecordsClassNames) {
  SKIP_WITHOUT_IMAGES();
  const std::string dir = tmp("cli"), data = dir + "/shapes";
  std::mt19937_64 g(3);
  for (int c = 0; c < 2; ++c)
    for (int k = 0; k < 40; ++k) {  // left half bright ("left") or right half bright ("right"), plus noise
      Image img{16, 16, 1, std::vector<uint8_t>(256)};
      for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 16; ++x) img.pixels[y * 16 + x] = static_cast<uint8_t>(((x < 8) == (c == 0) ? 160 : 40) + g() % 60);
      put_png(data + "/" + (c == 0 ? "left" : "right"), "s" + std::to_string(k) + ".png", img);
    }
  const std::string flags = "--model lenet5 --dataset folder:" + data + " --mean 0.5 --std 0.25 --seed 1 --threads 2 ";
  auto tr = autoqnn_test::run_cli("train " + flags + "--epochs 8 --lr 0.05 --batch-size 16 --out " + dir + "/fp.pt");
  ASSERT_EQ(tr.rc, 0) << tr.out;
  EXPECT_EQ(read_checkpoint_classes(dir + "/fp.pt"), (std::vector<std::string>{"left", "right"}));
  EXPECT_EQ(read_checkpoint_meta(dir + "/fp.pt").config.image_size, 16);
  auto ev = autoqnn_test::run_cli("eval " + flags + "--checkpoint " + dir + "/fp.pt --json", false);
  ASSERT_EQ(ev.rc, 0) << ev.out;
  const auto j = nlohmann::json::parse(ev.out);
  EXPECT_EQ(j.at("n").get<int64_t>(), 16);  // 0.2 of 40 per class
  EXPECT_GT(j.at("top1").get<double>(), 0.8) << "chance is 0.5";
  EXPECT_EQ(j.at("classes"), nlohmann::json({"left", "right"}));

  // A short search: the policy's provenance records the data set and its classes.
  auto se = autoqnn_test::run_cli("search " + flags + "--checkpoint " + dir + "/fp.pt --avg-bits 4 " +
                                  "--epochs 1 --warmup 0 --batch-size 16 --out " + dir + "/p.json");
  ASSERT_EQ(se.rc, 0) << se.out;
  std::ifstream pf(dir + "/p.json");
  const auto pj = nlohmann::json::parse(pf);
  EXPECT_EQ(pj.at("search").at("classes"), nlohmann::json({"left", "right"}));
  auto cv = autoqnn_test::run_cli("convert " + flags + "--checkpoint " + dir + "/fp.pt --policy " + dir +
                                  "/p.json --calib-batches 1 --out " + dir + "/q.pt");
  ASSERT_EQ(cv.rc, 0) << cv.out;
  EXPECT_EQ(read_checkpoint_classes(dir + "/q.pt"), (std::vector<std::string>{"left", "right"}));

  // --num-classes / --input-shape that do not fit the folder: usage errors, nothing written
  auto nc = autoqnn_test::run_cli("train " + flags + "--num-classes 3 --epochs 1 --out " + dir + "/nc.pt");
  EXPECT_EQ(nc.rc, 2) << nc.out;
  EXPECT_TRUE(contains(nc.out, "--num-classes 3: data set 'folder:" + data + "' has 2 classes")) << nc.out;
  auto is = autoqnn_test::run_cli("train " + flags + "--input-shape 3,32,32 --epochs 1 --out " + dir + "/is.pt");
  EXPECT_EQ(is.rc, 2) << is.out;
  EXPECT_TRUE(contains(is.out, "--input-shape 3,32,32 does not fit data set 'folder:" + data + "', whose images are 1,16,16")) << is.out;
  // the checkpoint (16x16) against the folder resized to 28x28
  auto sz = autoqnn_test::run_cli("eval " + flags + "--image-size 28 --checkpoint " + dir + "/fp.pt");
  EXPECT_EQ(sz.rc, 1) << sz.out;
  EXPECT_TRUE(contains(sz.out, "was trained on 1x16 inputs")) << sz.out;
  auto fl = autoqnn_test::run_cli("train --model lenet5 --dataset synthetic --image-size 28 --epochs 1 --out " + dir + "/fl.pt");
  EXPECT_EQ(fl.rc, 2) << fl.out;
  EXPECT_TRUE(contains(fl.out, "--image-size applies to --dataset folder:DIR only")) << fl.out;
  for (const std::string f : {"nc.pt", "is.pt", "fl.pt"}) EXPECT_FALSE(fs::exists(dir + "/" + f)) << f;
}
