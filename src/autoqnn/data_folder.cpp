#include "autoqnn/data_folder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <stdexcept>

#include "autoqnn/image_io.h"
#include "autoqnn/random_index.h"

namespace autoqnn {

namespace fs = std::filesystem;

namespace {

const char* kLayout = "expected DIR/train/<class>/*.png|jpg|jpeg and DIR/test/<class>/..., or one tree "
                      "DIR/<class>/... split by --val-fraction";
constexpr double kDefaultValFraction = 0.2;

struct Sample {
  std::string path;
  int64_t label;
};

// The folder's files and the shape every image is brought to.
struct FolderScan {
  std::string dir;
  std::vector<std::string> classes;
  std::vector<Sample> train, test;  // in the fixed shuffled order of split_seed
  int64_t channels = 0, height = 0, width = 0;
};

std::string dir_of(const std::string& dataset) { return dataset.substr(std::string("folder:").size()); }

uint64_t bounded(std::mt19937_64& g, uint64_t n) { return bounded_index(g, n); }
template <class T>
void shuffle(std::vector<T>& v, std::mt19937_64& g) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[bounded(g, i)]);
}

bool hidden(const fs::path& p) { return !p.filename().empty() && p.filename().string()[0] == '.'; }

// Sorted names of the visible subfolders of `dir`.
std::vector<std::string> class_folders(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && !hidden(e.path())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The image files under one class folder (recursively), sorted by path; an empty folder is an error.
std::vector<std::string> class_images(const fs::path& folder) {
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink);
       it != fs::recursive_directory_iterator(); ++it) {
    if (hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && has_image_extension(it->path().string())) files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw std::runtime_error("folder data set: class folder '" + folder.string() +
                             "' holds no .png / .jpg / .jpeg image");
  return files;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

FolderOptions& options_storage() {
  static FolderOptions o;
  return o;
}

void check_options(const FolderOptions& opt) {
  if (opt.channels != 0 && opt.channels != 1 && opt.channels != 3)
    throw std::invalid_argument("--channels must be 1 (gray) or 3 (RGB), got " + std::to_string(opt.channels));
  if (opt.image_height < 0 || opt.image_width < 0 || (opt.image_height == 0) != (opt.image_width == 0))
    throw std::invalid_argument("--image-size: H and W must be positive");
  if (opt.val_fraction != 0 && !(opt.val_fraction > 0 && opt.val_fraction < 1))
    throw std::invalid_argument("--val-fraction must be inside (0, 1), got " + std::to_string(opt.val_fraction));
  for (double s : opt.stddev)
    if (!(s > 0) || !std::isfinite(s)) throw std::invalid_argument("--std values must be positive");
  for (double m : opt.mean)
    if (!std::isfinite(m)) throw std::invalid_argument("--mean values must be finite");
}

// The data set's root and whether it has the train/ + test/ layout.
std::pair<fs::path, bool> layout(const std::string& dir) {
  if (dir.empty()) throw std::invalid_argument("--dataset folder:DIR: no folder given");
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw std::runtime_error("folder data set '" + dir + "' is not a directory");
  const bool has_train = fs::is_directory(root / "train", ec), has_test = fs::is_directory(root / "test", ec);
  if (has_train != has_test)
    throw std::runtime_error("folder data set '" + dir + "' has '" + (has_train ? "train" : "test") +
                             "/' but no '" + (has_train ? "test" : "train") + "/'; " + kLayout);
  return {root, has_train};
}

FolderScan scan(const std::string& dataset) {
  if (!image_decoding_available())
    throw std::runtime_error("--dataset " + dataset + ": " + no_image_decoding_message());
  const FolderOptions& opt = folder_options();
  check_options(opt);
  FolderScan s;
  s.dir = dir_of(dataset);
  const auto [root, has_train] = layout(s.dir);
  std::mt19937_64 g(opt.split_seed * 0x9E3779B97F4A7C15ull + 0xF01D);
  if (has_train) {
    if (opt.val_fraction != 0)
      throw std::invalid_argument("--val-fraction splits a one-tree folder; '" + s.dir +
                                  "' already has train/ and test/");
    s.classes = class_folders(root / "train");
    const auto test_classes = class_folders(root / "test");
    if (s.classes.empty())
      throw std::runtime_error("folder data set '" + (root / "train").string() + "' has no class folders; " + kLayout);
    if (test_classes != s.classes)
      throw std::runtime_error("folder data set '" + s.dir + "': the classes of test/ (" + join(test_classes) +
                               ") differ from those of train/ (" + join(s.classes) + ")");
    for (size_t c = 0; c < s.classes.size(); ++c) {
      for (auto& f : class_images(root / "train" / s.classes[c])) s.train.push_back({f, int64_t(c)});
      for (auto& f : class_images(root / "test" / s.classes[c])) s.test.push_back({f, int64_t(c)});
    }
  } else {
    s.classes = class_folders(root);
    if (s.classes.empty()) throw std::runtime_error("folder data set '" + s.dir + "' has no class folders; " + kLayout);
    const double frac = opt.val_fraction != 0 ? opt.val_fraction : kDefaultValFraction;
    for (size_t c = 0; c < s.classes.size(); ++c) {  // stratified: each class split on its own
      auto files = class_images(root / s.classes[c]);
      shuffle(files, g);
      const int64_t n = static_cast<int64_t>(files.size());
      int64_t ntest = std::llround(frac * n);
      ntest = n >= 2 ? std::clamp<int64_t>(ntest, 1, n - 1) : 0;  // both sides get a class's image when it has 2
      for (int64_t i = 0; i < n; ++i) (i < ntest ? s.test : s.train).push_back({files[i], int64_t(c)});
    }
  }
  // One fixed order (not class after class): --train-limit and the search's validation tail then see every class.
  shuffle(s.train, g);
  shuffle(s.test, g);
  if (s.test.empty()) throw std::runtime_error("folder data set '" + s.dir + "' gives no test image (each class needs >= 2 images)");

  // Headers only: sizes and channels must agree unless --image-size / --channels say what to make of them.
  const Sample* first = nullptr;
  ImageHeader h0;
  for (const auto* set : {&s.train, &s.test})
    for (const auto& smp : *set) {
      const ImageHeader h = read_image_header(smp.path);
      if (!first) {
        first = &smp;
        h0 = h;
        continue;
      }
      if (opt.image_height == 0 && (h.height != h0.height || h.width != h0.width))
        throw std::runtime_error("folder data set '" + s.dir + "': images differ in size: '" + first->path + "' is " +
                                 std::to_string(h0.height) + "x" + std::to_string(h0.width) + ", '" + smp.path +
                                 "' is " + std::to_string(h.height) + "x" + std::to_string(h.width) +
                                 " (pass --image-size H[,W] to resize them)");
      if (opt.channels == 0 && h.channels != h0.channels)
        throw std::runtime_error("folder data set '" + s.dir + "': images differ in channels: '" + first->path +
                                 "' has " + std::to_string(h0.channels) + ", '" + smp.path + "' has " +
                                 std::to_string(h.channels) + " (pass --channels 1 or 3)");
    }
  s.channels = opt.channels ? opt.channels : h0.channels;
  s.height = opt.image_height ? opt.image_height : h0.height;
  s.width = opt.image_width ? opt.image_width : h0.width;
  if (s.height != s.width)
    throw std::runtime_error("folder data set '" + s.dir + "': images are " + std::to_string(s.height) + "x" +
                             std::to_string(s.width) + "; models take square images (pass --image-size S)");
  for (const auto* v : {&opt.mean, &opt.stddev})
    if (!v->empty() && v->size() != 1 && static_cast<int64_t>(v->size()) != s.channels)
      throw std::invalid_argument(std::string(v == &opt.mean ? "--mean" : "--std") + " has " +
                                  std::to_string(v->size()) + " values; the images have " +
                                  std::to_string(s.channels) + " channels (give 1 or " + std::to_string(s.channels) + ")");
  return s;
}

double per_channel(const std::vector<double>& v, int64_t c, double dflt) {
  return v.empty() ? dflt : v[v.size() == 1 ? 0 : c];
}

// Decodes, converts channels, resizes and normalises samples[0, n) into [n, C, H, W] float32.
TensorDataset decode(const std::vector<Sample>& samples, int64_t n, const FolderScan& s, bool normalize) {
  const FolderOptions& opt = folder_options();
  auto images = torch::empty({n, s.channels, s.height, s.width}, torch::kFloat32);
  auto labels = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const Image img = read_image(samples[i].path);
    auto x = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels},
                              torch::kUInt8)
                 .permute({2, 0, 1})
                 .to(torch::kFloat32)
                 .div_(255.0);
    if (img.channels == 3 && s.channels == 1)  // ITU-R BT.601 luma, as PIL's convert("L") (without its rounding)
      x = (x[0] * 0.299 + x[1] * 0.587 + x[2] * 0.114).unsqueeze(0);
    else if (img.channels == 1 && s.channels == 3)
      x = x.expand({3, img.height, img.width});
    if (img.height != s.height || img.width != s.width)
      x = torch::nn::functional::interpolate(
              x.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{s.height, s.width})
                                  .mode(torch::kBilinear)
                                  .align_corners(false))
              .squeeze(0);
    images[i].copy_(x);
    labels[i] = samples[i].label;
  }
  if (normalize)
    for (int64_t c = 0; c < s.channels; ++c)
      images.select(1, c).sub_(per_channel(opt.mean, c, 0.0)).div_(per_channel(opt.stddev, c, 1.0));
  return {images, labels};
}

int64_t limited(int64_t n, int64_t limit) { return limit > 0 ? std::min(n, limit) : n; }

}  // namespace

void set_folder_options(const FolderOptions& opt) { options_storage() = opt; }
const FolderOptions& folder_options() { return options_storage(); }

bool is_folder_dataset(const std::string& dataset) { return dataset.rfind("folder:", 0) == 0; }

std::vector<std::string> folder_class_names(const std::string& dataset) {
  const auto [root, has_train] = layout(dir_of(dataset));
  return class_folders(has_train ? root / "train" : root);
}

namespace detail {

DatasetInfo folder_dataset_info(const std::string& dataset) {
  const auto s = scan(dataset);
  const FolderOptions& opt = folder_options();
  DatasetInfo info{s.channels, s.height, s.width, static_cast<int64_t>(s.classes.size()), {0, 0, 0}, {1, 1, 1}};
  for (int64_t c = 0; c < s.channels; ++c) {
    info.mean[c] = per_channel(opt.mean, c, 0.0);
    info.stddev[c] = per_channel(opt.stddev, c, 1.0);
  }
  return info;
}

void load_folder_dataset(const DataOptions& opt, TensorDataset& full, TensorDataset& test) {
  const auto s = scan(opt.dataset);
  full = decode(s.train, limited(static_cast<int64_t>(s.train.size()), opt.train_limit), s, opt.normalize);
  test = decode(s.test, limited(static_cast<int64_t>(s.test.size()), opt.test_limit), s, opt.normalize);
  if (full.size() == 0) throw std::runtime_error("folder data set '" + s.dir + "' has no training images");
}

}  // namespace detail

}  // namespace autoqnn
