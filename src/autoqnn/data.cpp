// Datasets: IDX (Fashion-MNIST, plain or gzip), CIFAR-10 binary batches, and the synthetic test set.
// Everything is loaded into memory once; BatchIterator index_selects mini-batches from it.
// Randomness (synthetic set, shuffling, augmentation) uses std::mt19937_64 with our own bounded /
// normal draws, so it is identical across LibTorch versions and C++ standard libraries.
#include "autoqnn/data.h"
#include "autoqnn/data_folder.h"
#include "autoqnn/data_tensors.h"
#include "autoqnn/random_index.h"

#include "autoqnn/distributed.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace autoqnn {

// ------------------------------------------------------------------ TensorDataset
TensorDataset TensorDataset::slice(int64_t begin, int64_t end) const {
  const int64_t n = size();
  begin = std::clamp<int64_t>(begin, 0, n);
  end = std::clamp<int64_t>(end, begin, n);
  if (!labels.defined()) return {};
  return {images.narrow(0, begin, end - begin), labels.narrow(0, begin, end - begin)};
}

TensorDataset TensorDataset::head(int64_t n) const {
  if (n <= 0 || n >= size()) return *this;
  return slice(0, n);
}

// ------------------------------------------------------------------ dataset facts
namespace {

const char* kValidDatasets = "fashion-mnist, cifar10, synthetic, tensors:FILE.safetensors, folder:DIR";
const char* kFashionFix = "install the Debian package dataset-fashion-mnist or pass --data-dir DIR";
const char* kCifarFix =
    "download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it and "
    "pass --data-dir DIR/cifar-10-batches-bin";

// Synthetic set sizes: full_train = 6000 (train 5000 / val 1000), test = 1000.
constexpr int64_t kSynthTrain = 6000, kSynthTest = 1000, kSynthSize = 28;

std::string canonical_name(const std::string& dataset) {
  std::string s;
  for (char c : dataset) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "fashion-mnist" || s == "fashion_mnist" || s == "fashionmnist" || s == "fmnist") return "fashion-mnist";
  if (s == "cifar10" || s == "cifar-10" || s == "cifar_10") return "cifar10";
  if (s == "synthetic") return "synthetic";
  throw std::invalid_argument("unknown dataset '" + dataset + "'; valid: " + kValidDatasets);
}

}  // namespace

DatasetInfo dataset_info(const std::string& dataset) {
  if (detail::is_tensors_dataset(dataset)) return detail::tensors_dataset_info(dataset);
  if (is_folder_dataset(dataset)) return detail::folder_dataset_info(dataset);
  const std::string d = canonical_name(dataset);
  // mean / stddev of the training images on the [0, 1] pixel scale (see docs/data.md).
  if (d == "fashion-mnist") return {1, 28, 28, 10, {0.2860, 0.0, 0.0}, {0.3530, 1.0, 1.0}};
  if (d == "cifar10") return {3, 32, 32, 10, {0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}};
  return {1, kSynthSize, kSynthSize, 10, {0.2500, 0.0, 0.0}, {0.3100, 1.0, 1.0}};  // synthetic
}

std::string default_data_dir(const std::string& dataset) {
  if (detail::is_tensors_dataset(dataset) || is_folder_dataset(dataset)) return "";
  const std::string d = canonical_name(dataset);
  if (d == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (d == "cifar10") return "/usr/share/datasets/cifar-10-batches-bin";
  return "";  // synthetic: generated in memory
}

// ------------------------------------------------------------------ file reading
namespace {

bool file_exists(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return f.good();
}

std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& fix) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error(path + ": cannot open file; " + fix);
  const std::streamsize n = f.tellg();
  if (n < 0) throw std::runtime_error(path + ": cannot determine the file size; " + fix);
  std::vector<uint8_t> buf(static_cast<size_t>(n));
  f.seekg(0);
  if (n > 0 && !f.read(reinterpret_cast<char*>(buf.data()), n))
    throw std::runtime_error(path + ": read error; " + fix);
  return buf;
}

// Decompresses one or more concatenated gzip members.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path, const std::string& fix) {
  std::vector<uint8_t> out;
  if (in.size() >= 18) {  // ISIZE (size mod 2^32 of the last member) as a reservation hint
    const size_t k = in.size() - 4;
    const uint32_t isize = uint32_t(in[k]) | uint32_t(in[k + 1]) << 8 | uint32_t(in[k + 2]) << 16 |
                           uint32_t(in[k + 3]) << 24;
    out.reserve(std::min<size_t>(isize, size_t(1) << 31));
  }
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw std::runtime_error(path + ": zlib inflateInit2 failed");
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());  // IDX/CIFAR files are far below 4 GiB
  std::vector<uint8_t> chunk(1 << 20);
  int rc = Z_OK;
  for (;;) {
    zs.next_out = chunk.data();
    zs.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    out.insert(out.end(), chunk.data(), chunk.data() + (chunk.size() - zs.avail_out));
    if (rc == Z_STREAM_END) {
      // Another gzip member follows? (gzip allows concatenation.)
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      inflateEnd(&zs);
      throw std::runtime_error(path + ": truncated gzip data (unexpected end of file); " + fix);
    }
    std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
    inflateEnd(&zs);
    throw std::runtime_error(path + ": corrupt gzip data (" + msg + "); " + fix);
  }
  inflateEnd(&zs);
  return out;
}

// The file's content, gunzipped when it starts with the gzip magic 1f 8b.
std::vector<uint8_t> read_maybe_gzip(const std::string& path, const std::string& fix) {
  auto raw = read_file_bytes(path, fix);
  if (raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) return gunzip(raw, path, fix);
  return raw;
}

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof(b), "0x%08x", v);
  return b;
}

// Parses an IDX header of unsigned bytes with `ndims` dimensions; returns the dims and checks the length.
std::vector<int64_t> idx_header(const std::vector<uint8_t>& d, uint32_t want_magic, int ndims,
                                const std::string& path, const std::string& fix) {
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (d.size() < 4)
    throw std::runtime_error(path + ": too short for an IDX file (" + std::to_string(d.size()) + " bytes); " + fix);
  const uint32_t magic = be32(d.data());
  if (magic != want_magic) {
    std::string what = (magic >> 8) == 0x08 ? " (an IDX file with " + std::to_string(magic & 0xff) +
                                                  " dimensions; images have 3, labels 1)"
                                            : " (not an unsigned-byte IDX file)";
    throw std::runtime_error(path + ": bad IDX magic number " + hex32(magic) + ", expected " + hex32(want_magic) +
                             what + "; " + fix);
  }
  if (d.size() < header)
    throw std::runtime_error(path + ": truncated IDX header (" + std::to_string(d.size()) + " bytes, need " +
                             std::to_string(header) + "); " + fix);
  std::vector<int64_t> dims;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint32_t v = be32(d.data() + 4 + 4 * i);
    if (v > (1u << 30)) throw std::runtime_error(path + ": implausible IDX dimension " + std::to_string(v) + "; " + fix);
    if (i > 0 && v == 0) throw std::runtime_error(path + ": IDX dimension " + std::to_string(i) + " is 0; " + fix);
    dims.push_back(v);
    total *= v;
  }
  if (total > (uint64_t(1) << 40)) throw std::runtime_error(path + ": implausible IDX dimensions; " + fix);
  const uint64_t want = header + total;
  if (d.size() != want) {
    const char* why = d.size() < want ? "truncated" : "trailing bytes after the data";
    throw std::runtime_error(path + ": " + why + ": the header promises " + std::to_string(want) +
                             " bytes of IDX data, the (decompressed) file has " + std::to_string(d.size()) + "; " +
                             fix);
  }
  return dims;
}

torch::Tensor images_to_float(const torch::Tensor& u8, const DatasetInfo& info, bool normalize) {
  auto x = u8.to(torch::kFloat32).div_(255.0);
  if (normalize) {
    const int64_t c = x.size(1);
    auto mean = torch::tensor(std::vector<float>(info.mean, info.mean + c)).view({1, c, 1, 1});
    auto sd = torch::tensor(std::vector<float>(info.stddev, info.stddev + c)).view({1, c, 1, 1});
    x.sub_(mean).div_(sd);
  }
  return x;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// "<dir>/<base>.gz" when present, else "<dir>/<base>"; neither -> throws with the fix.
std::string find_idx_file(const std::string& dir, const std::string& base) {
  const auto gz = join_path(dir, base + ".gz");
  if (file_exists(gz)) return gz;
  const auto plain = join_path(dir, base);
  if (file_exists(plain)) return plain;
  throw std::runtime_error(gz + ": file not found (nor " + base + " uncompressed); " + kFashionFix);
}

}  // namespace

torch::Tensor read_idx_images(const std::string& path) {
  auto d = read_maybe_gzip(path, kFashionFix);
  auto dims = idx_header(d, 0x00000803, 3, path, kFashionFix);
  auto t = torch::empty({dims[0], dims[1], dims[2]}, torch::kUInt8);
  if (t.numel() > 0) std::memcpy(t.data_ptr<uint8_t>(), d.data() + 16, static_cast<size_t>(t.numel()));
  return t;
}

torch::Tensor read_idx_labels(const std::string& path, int64_t num_classes) {
  auto d = read_maybe_gzip(path, kFashionFix);
  auto dims = idx_header(d, 0x00000801, 1, path, kFashionFix);
  auto t = torch::empty({dims[0]}, torch::kInt64);
  auto* p = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < dims[0]; ++i) {
    const uint8_t v = d[8 + i];
    if (v >= num_classes)
      throw std::runtime_error(path + ": label " + std::to_string(v) + " at index " + std::to_string(i) +
                               " is outside 0.." + std::to_string(num_classes - 1) + "; the file is corrupt; " +
                               kFashionFix);
    p[i] = v;
  }
  return t;
}

// ------------------------------------------------------------------ CIFAR-10
namespace {

constexpr int64_t kCifarRecord = 1 + 3 * 32 * 32;

// Reads CIFAR-10 binary batches (records of 1 label byte + 3072 pixel bytes, R then G then B planes).
// Stops after `limit` records when limit > 0 (later files are then not read).
std::pair<torch::Tensor, torch::Tensor> read_cifar_files(const std::vector<std::string>& paths, int64_t limit) {
  std::vector<torch::Tensor> imgs, labs;
  int64_t have = 0;
  for (const auto& path : paths) {
    if (limit > 0 && have >= limit) break;
    if (!file_exists(path)) throw std::runtime_error(path + ": file not found; " + kCifarFix);
    auto d = read_maybe_gzip(path, kCifarFix);
    if (d.empty() || d.size() % kCifarRecord != 0)
      throw std::runtime_error(path + ": size " + std::to_string(d.size()) + " bytes is not a positive multiple of " +
                               std::to_string(kCifarRecord) + " (1 label + 3072 pixel bytes per record); " +
                               kCifarFix);
    const int64_t n = static_cast<int64_t>(d.size()) / kCifarRecord;
    auto raw = torch::from_blob(d.data(), {n, kCifarRecord}, torch::kUInt8);
    auto lab = raw.select(1, 0).to(torch::kInt64);
    auto bad_rows = (lab > 9).nonzero();
    if (bad_rows.numel() > 0) {
      const int64_t bad = bad_rows[0][0].item<int64_t>();
      throw std::runtime_error(path + ": label " + std::to_string(lab[bad].item<int64_t>()) + " in record " +
                               std::to_string(bad) + " is outside 0..9; the file is corrupt (is it the binary "
                               "version of CIFAR-10?); " + kCifarFix);
    }
    imgs.push_back(raw.narrow(1, 1, 3072).reshape({n, 3, 32, 32}).clone());
    labs.push_back(lab);
    have += n;
  }
  if (imgs.empty()) throw std::invalid_argument("read_cifar10: no batch files given");
  auto images = torch::cat(imgs, 0), labels = torch::cat(labs, 0);
  if (limit > 0 && limit < images.size(0)) {
    images = images.narrow(0, 0, limit);
    labels = labels.narrow(0, 0, limit);
  }
  return {images, labels};
}

}  // namespace

TensorDataset read_cifar10(const std::vector<std::string>& paths, bool normalize, int64_t limit) {
  auto [u8, labels] = read_cifar_files(paths, limit);
  return {images_to_float(u8, dataset_info("cifar10"), normalize), labels.clone()};
}

// ------------------------------------------------------------------ synthetic
namespace {

double uniform01(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * (1.0 / 9007199254740992.0); }

uint64_t bounded(std::mt19937_64& g, uint64_t n) { return bounded_index(g, n); }

// Approximately standard normal: Irwin-Hall sum of 4 uniforms, scaled to unit variance.
double approx_normal(std::mt19937_64& g) {
  return (uniform01(g) + uniform01(g) + uniform01(g) + uniform01(g) - 2.0) * 1.7320508075688772;
}

// 10 class templates, 28x28 in [0, 1]: each the max of 3 Gaussian blobs at class-specific places.
std::vector<std::vector<float>> synthetic_templates(uint64_t seed) {
  std::mt19937_64 g(seed * 0x9E3779B97F4A7C15ull + 0x5eed);
  const int64_t S = kSynthSize;
  std::vector<std::vector<float>> t(10, std::vector<float>(S * S, 0.f));
  for (int c = 0; c < 10; ++c) {
    for (int b = 0; b < 3; ++b) {
      const double cy = 5 + uniform01(g) * (S - 10), cx = 5 + uniform01(g) * (S - 10);
      const double sy = 1.5 + 2.5 * uniform01(g), sx = 1.5 + 2.5 * uniform01(g);
      for (int64_t y = 0; y < S; ++y)
        for (int64_t x = 0; x < S; ++x) {
          const double dy = (y - cy) / sy, dx = (x - cx) / sx;
          const float v = static_cast<float>(std::exp(-0.5 * (dy * dy + dx * dx)));
          t[c][y * S + x] = std::max(t[c][y * S + x], v);
        }
    }
  }
  return t;
}

// n samples: label uniform, template shifted by up to +-3 pixels (zero fill), amplitude 0.3..0.9,
// plus noise of std 0.5, clamped to [0, 1]. Pixels stay in [0, 1] like a real image.
std::pair<torch::Tensor, torch::Tensor> synthetic_samples(const std::vector<std::vector<float>>& tmpl, int64_t n,
                                                          uint64_t stream_seed) {
  std::mt19937_64 g(stream_seed);
  const int64_t S = kSynthSize;
  auto images = torch::empty({n, 1, S, S}, torch::kFloat32);
  auto labels = torch::empty({n}, torch::kInt64);
  float* px = images.data_ptr<float>();
  int64_t* pl = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(bounded(g, 10));
    const int64_t sy = static_cast<int64_t>(bounded(g, 7)) - 3, sx = static_cast<int64_t>(bounded(g, 7)) - 3;
    const double amp = 0.3 + 0.6 * uniform01(g);
    pl[i] = c;
    float* o = px + i * S * S;
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x) {
        const int64_t ty = y - sy, tx = x - sx;
        const double base = (ty >= 0 && ty < S && tx >= 0 && tx < S) ? tmpl[c][ty * S + tx] : 0.0;
        const double v = amp * base + 0.5 * approx_normal(g);
        o[y * S + x] = static_cast<float>(std::clamp(v, 0.0, 1.0));
      }
  }
  return {images, labels};
}

}  // namespace

// ------------------------------------------------------------------ splits
namespace {

// Number of validation images out of n training images: Fashion-MNIST / synthetic 1/6 (10 000 of 60 000),
// CIFAR-10 1/10 (5 000 of 50 000). At least one on each side when n >= 2.
int64_t val_count(const std::string& dataset, int64_t n) {
  const int64_t den = dataset == "cifar10" ? 10 : 6;
  int64_t v = n / den;
  if (n >= 2) v = std::clamp<int64_t>(v, 1, n - 1);
  else v = 0;
  return v;
}

}  // namespace

Splits load_splits(const DataOptions& opt) {
  const bool folder = is_folder_dataset(opt.dataset);
  if (folder || detail::is_tensors_dataset(opt.dataset)) {  // the user's data; val = the last 1/6 of the training set
    Splits s;
    if (folder)
      detail::load_folder_dataset(opt, s.full_train, s.test);
    else
      detail::load_tensors_dataset(opt, s.full_train, s.test);
    const int64_t n = s.full_train.size(), nval = n / 6;
    s.train = s.full_train.slice(0, n - nval);
    s.val = s.full_train.slice(n - nval, n);
    return s;
  }
  const std::string d = canonical_name(opt.dataset);
  const DatasetInfo info = dataset_info(d);
  const std::string dir = opt.data_dir.empty() ? default_data_dir(d) : opt.data_dir;
  TensorDataset full, test;

  if (d == "fashion-mnist") {
    auto load = [&](const std::string& img_base, const std::string& lab_base, int64_t limit) {
      const auto img_path = find_idx_file(dir, img_base), lab_path = find_idx_file(dir, lab_base);
      auto u8 = read_idx_images(img_path);
      auto labels = read_idx_labels(lab_path, info.num_classes);
      if (u8.size(0) != labels.size(0))
        throw std::runtime_error(img_path + " has " + std::to_string(u8.size(0)) + " images but " + lab_path +
                                 " has " + std::to_string(labels.size(0)) + " labels; the files do not belong "
                                 "together; " + kFashionFix);
      if (u8.size(1) != info.height || u8.size(2) != info.width)
        throw std::runtime_error(img_path + ": images are " + std::to_string(u8.size(1)) + "x" +
                                 std::to_string(u8.size(2)) + ", expected 28x28 for Fashion-MNIST; " + kFashionFix);
      if (limit > 0 && limit < u8.size(0)) {
        u8 = u8.narrow(0, 0, limit);
        labels = labels.narrow(0, 0, limit).clone();
      }
      return TensorDataset{images_to_float(u8.unsqueeze(1), info, opt.normalize), labels};
    };
    full = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte", opt.train_limit);
    test = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", opt.test_limit);
  } else if (d == "cifar10") {
    std::vector<std::string> train_files;
    for (int i = 1; i <= 5; ++i) train_files.push_back(join_path(dir, "data_batch_" + std::to_string(i) + ".bin"));
    full = read_cifar10(train_files, opt.normalize, opt.train_limit);
    test = read_cifar10({join_path(dir, "test_batch.bin")}, opt.normalize, opt.test_limit);
  } else {  // synthetic
    const auto tmpl = synthetic_templates(opt.seed);
    const int64_t ntr = opt.train_limit > 0 ? std::min(opt.train_limit, kSynthTrain) : kSynthTrain;
    const int64_t nte = opt.test_limit > 0 ? std::min(opt.test_limit, kSynthTest) : kSynthTest;
    // Separate streams for train and test; a prefix of a longer set equals the shorter set.
    auto [xtr, ytr] = synthetic_samples(tmpl, ntr, opt.seed * 1000003ull + 1);
    auto [xte, yte] = synthetic_samples(tmpl, nte, opt.seed * 1000003ull + 2);
    if (opt.normalize) {
      xtr.sub_(info.mean[0]).div_(info.stddev[0]);
      xte.sub_(info.mean[0]).div_(info.stddev[0]);
    }
    full = {xtr, ytr};
    test = {xte, yte};
  }

  Splits s;
  s.full_train = full;
  const int64_t n = full.size();
  const int64_t nval = val_count(d, n);
  s.train = full.slice(0, n - nval);
  s.val = full.slice(n - nval, n);
  s.test = test;
  return s;
}

// ------------------------------------------------------------------ BatchIterator
namespace {
uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return seed * 1000003ull + static_cast<uint64_t>(epoch); }
}  // namespace

BatchIterator::BatchIterator(const TensorDataset& ds, int64_t batch_size, bool shuffle, uint64_t seed,
                             AugmentOptions aug, bool drop_last)
    : ds_(ds), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last), seed_(seed), aug_(aug) {
  if (batch_size <= 0) throw std::invalid_argument("BatchIterator: batch size must be positive");
  if (aug.crop_padding < 0) throw std::invalid_argument("BatchIterator: crop padding must be >= 0");
  start_epoch(0);
}

void BatchIterator::set_shard(int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("BatchIterator: shard " + std::to_string(rank) + " of " + std::to_string(world));
  if (batch_size_ < world)
    throw std::invalid_argument("--batch-size " + std::to_string(batch_size_) + " is the global batch and must be >= the " +
                                "number of processes (" + std::to_string(world) + ")");
  shard_rank_ = rank;
  shard_world_ = world;
}

int64_t BatchIterator::usable_size() const {
  const int64_t n = ds_.size();
  const int64_t tail = n % batch_size_;
  return (shard_world_ > 1 && tail > 0 && tail < shard_world_) ? n - tail : n;
}

int64_t BatchIterator::num_batches() const {
  const int64_t n = usable_size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

void BatchIterator::start_epoch(int64_t epoch) {
  epoch_ = epoch;
  pos_ = 0;
  const int64_t n = ds_.size();
  order_ = torch::arange(n, torch::kInt64);
  if (shuffle_ && n > 1) {
    std::mt19937_64 g(epoch_seed(seed_, epoch));
    int64_t* p = order_.data_ptr<int64_t>();
    for (int64_t i = n - 1; i > 0; --i)  // Fisher-Yates
      std::swap(p[i], p[bounded(g, static_cast<uint64_t>(i + 1))]);
  }
  aug_state_ = epoch_seed(seed_, epoch) ^ 0xA5A5A5A5DEADBEEFull;
}

bool BatchIterator::next(torch::Tensor& images, torch::Tensor& labels) {
  const int64_t n = usable_size();
  const int64_t left = n - pos_;
  if (left <= 0 || (drop_last_ && left < batch_size_)) return false;
  const int64_t b = std::min(batch_size_, left);
  auto idx = order_.narrow(0, pos_, b);
  const int64_t batch_index = pos_ / batch_size_;
  pos_ += b;
  global_b_ = b;
  const bool augmenting = aug_.crop_padding > 0 || aug_.hflip;
  auto [lo, hi] = dist::shard_range(b, shard_rank_, shard_world_);
  if (!augmenting) idx = idx.slice(0, lo, hi);  // this rank's slice of the global batch
  images = ds_.images.index_select(0, idx);
  labels = ds_.labels.index_select(0, idx);
  if (augmenting) {
    // The draws are per position in the global batch, so they do not depend on the world size.
    images = augment(images, batch_index).slice(0, lo, hi);
    labels = labels.slice(0, lo, hi);
  }
  return true;
}

// Random crop of the zero-padded image + horizontal flip, both drawn per image from a generator seeded by
// (seed, epoch, batch index); done as one gather over the flattened padded images.
torch::Tensor BatchIterator::augment(const torch::Tensor& x, int64_t batch_index) const {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), p = aug_.crop_padding;
  const int64_t Hp = H + 2 * p, Wp = W + 2 * p;
  std::mt19937_64 g(aug_state_ + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(batch_index + 1));
  auto off = torch::empty({B}, torch::kInt64);  // top-left offset of the crop in the padded image
  auto flip = torch::empty({B}, torch::kBool);
  int64_t* po = off.data_ptr<int64_t>();
  bool* pf = flip.data_ptr<bool>();
  for (int64_t i = 0; i < B; ++i) {
    const int64_t dy = p > 0 ? static_cast<int64_t>(bounded(g, 2 * p + 1)) : 0;
    const int64_t dx = p > 0 ? static_cast<int64_t>(bounded(g, 2 * p + 1)) : 0;
    const bool f = aug_.hflip && (g() >> 63);
    po[i] = dy * Wp + dx;
    pf[i] = f;
  }
  auto padded = p > 0 ? torch::constant_pad_nd(x, {p, p, p, p}, 0) : x;
  auto rows = torch::arange(H, torch::kInt64).view({H, 1}) * Wp;
  auto cols = torch::arange(W, torch::kInt64).view({1, W});
  auto straight = (rows + cols).view({1, H * W});
  auto mirrored = (rows + (W - 1 - cols)).view({1, H * W});
  auto index = torch::where(flip.view({B, 1}), mirrored, straight) + off.view({B, 1});  // [B, H*W]
  index = index.unsqueeze(1).expand({B, C, H * W});
  return padded.reshape({B, C, Hp * Wp}).gather(2, index).view({B, C, H, W});
}

}  // namespace autoqnn
