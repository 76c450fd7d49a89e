// Packed export: bit packing, the safetensors container, exact size accounting and bit-exact verify for
// every weight scheme.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/convert.h"
#include "autoqnn/data.h"
#include "autoqnn/export.h"
#include "autoqnn/model_io.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "quantizers/registry.h"

namespace fs = std::filesystem;
using namespace autoqnn;
using nlohmann::json;
using quant::QuantSpec;

namespace {

std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path d = fs::path(AUTOQNN_TEST_TMP) / ("export_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
  autoqnn_test::remove_tree(fs::path(d).string());
  fs::create_directories(d);
  return d.string();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream is(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(is), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream os(path, std::ios::binary | std::ios::trunc);
  os.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

const TensorDataset& calib_data() {
  static Splits s = [] {
    DataOptions d;
    d.dataset = "synthetic";
    d.train_limit = 256;
    d.test_limit = 64;
    return load_splits(d);
  }();
  return s.full_train;
}

// LeNet-5 with `policy` installed and calibrated on synthetic data (2 batches).
ModelPtr quantized_lenet(const Policy& p) {
  torch::manual_seed(3);
  auto m = make_model("lenet5", ModelConfig{1, 28, 10});
  CalibOptions co;
  co.batches = 2;
  co.batch_size = 64;
  convert_model(*m, p, &calib_data(), co);
  return m;
}

// Every weight spec: each scheme at each valid bitwidth in 1..8, plus per-channel / parameter variants.
std::vector<std::string> all_weight_specs() {
  std::vector<std::string> out;
  for (const auto& t : quant::scheme_table()) {
    if (!t.weight_ok) continue;
    for (int b : quant::valid_bits(QuantSpec::parse(t.name), quant::Role::Weight))
      if (b <= 8) out.push_back(std::string(t.name) + ":" + std::to_string(b));
  }
  for (const char* s : {"uniform:4:per_channel", "uniform:3:asym", "uniform:4:asym:per_channel", "fixed:4:per_channel",
                        "esb:5:k=2", "esb:4:k=1:per_channel", "afp:6:e=3", "vecq:3:per_channel", "twn:per_channel",
                        "binary:per_channel", "zoomq:3:per_channel", "mul2q:3:per_channel", "resq:2:per_channel",
                        "apot:4:per_channel", "pot:3:per_channel", "clipq:3:per_channel"})
    out.push_back(s);
  return out;
}

int64_t file_weight_bytes(const SafetensorsFile& f) {
  int64_t n = 0;
  for (const auto& [name, t] : f.tensors) {
    auto ends = [&](const std::string& suf) {
      return name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (ends(".weight.codes") || ends(".weight.scale") || ends(".weight.offset") || ends(".weight.table"))
      n += static_cast<int64_t>(t.data.size());
  }
  return n;
}

}  // namespace

TEST(BitPacking, LsbFirstLayout) {
  // codes 1, 2, 3 at 2 bits: 01 | 10 << 2 | 11 << 4 = 0b00111001
  auto b = pack_bits(torch::tensor({1, 2, 3}, torch::kInt64), 2);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0], 0x39);
  // 3-bit codes crossing a byte boundary: 5 | 6 << 3 | 7 << 6 = 0x1F5 -> f5 01
  b = pack_bits(torch::tensor({5, 6, 7}, torch::kInt64), 3);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], 0xf5);
  EXPECT_EQ(b[1], 0x01);
  // 1 bit: element i is bit i
  b = pack_bits(torch::tensor({1, 0, 0, 0, 0, 0, 0, 1, 1}, torch::kInt64), 1);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], 0x81);
  EXPECT_EQ(b[1], 0x01);
  // 8 bits is the identity, 12 bits little-endian nibbles
  b = pack_bits(torch::tensor({0xab, 0x01}, torch::kInt64), 8);
  EXPECT_EQ(b, (std::vector<uint8_t>{0xab, 0x01}));
  b = pack_bits(torch::tensor({0xabc, 0x123}, torch::kInt64), 12);
  EXPECT_EQ(b, (std::vector<uint8_t>{0xbc, 0x3a, 0x12}));
  EXPECT_TRUE(pack_bits(torch::zeros({0}, torch::kInt64), 4).empty());
}

TEST(BitPacking, RoundTripEveryWidthAndRejectsBadCodes) {
  torch::manual_seed(0);
  for (int bits = 1; bits <= 16; ++bits) {
    for (int64_t n : {1, 7, 8, 9, 1001}) {
      auto codes = torch::randint(0, int64_t(1) << bits, {n}, torch::kInt64);
      auto packed = pack_bits(codes, bits);
      ASSERT_EQ(static_cast<int64_t>(packed.size()), (n * bits + 7) / 8);
      auto back = unpack_bits(packed.data(), packed.size(), n, bits);
      EXPECT_TRUE(torch::equal(back, codes)) << bits << " bits, n " << n;
      if ((n * bits) % 8) {
        EXPECT_EQ(packed.back() >> ((n * bits) % 8), 0) << "unused high bits are zero";
      }
    }
  }
  EXPECT_THROW(pack_bits(torch::tensor({4}, torch::kInt64), 2), std::out_of_range);
  EXPECT_THROW(pack_bits(torch::tensor({-1}, torch::kInt64), 2), std::out_of_range);
  EXPECT_THROW(pack_bits(torch::tensor({1.0}), 2), std::invalid_argument);
  std::vector<uint8_t> two(2);
  EXPECT_THROW(unpack_bits(two.data(), two.size(), 5, 4), std::invalid_argument);  // 20 bits need 3 bytes
  EXPECT_NO_THROW(unpack_bits(two.data(), two.size(), 3, 4));                      // 12 bits fit in 2
}

TEST(Safetensors, LayoutIsTheStandardOne) {
  const std::string dir = test_dir();
  SafetensorsFile f;
  f.metadata["note"] = "hello";
  f.tensors["b.codes"] = to_safetensor(torch::tensor({1, 2, 3}, torch::kUInt8));
  f.tensors["a.scale"] = to_safetensor(torch::tensor(0.5f));
  f.tensors["z.count"] = to_safetensor(torch::tensor({7}, torch::kInt64));
  f.tensors["m.weight"] = to_safetensor(torch::arange(6, torch::kFloat32).reshape({2, 3}));
  write_safetensors(dir + "/t.safetensors", f);
  auto bytes = read_bytes(dir + "/t.safetensors");
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[i]) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(static_cast<int64_t>(8 + n), f.header_bytes);
  json h = json::parse(std::string(bytes.begin() + 8, bytes.begin() + 8 + n));
  EXPECT_EQ(h["__metadata__"]["note"], "hello");
  EXPECT_EQ(h["a.scale"]["dtype"], "F32");
  EXPECT_EQ(h["a.scale"]["shape"], json::array());
  EXPECT_EQ(h["m.weight"]["shape"], json::array({2, 3}));
  // alignment order: I64 first, then F32 by name, then U8
  EXPECT_EQ(h["z.count"]["data_offsets"], json::array({0, 8}));
  EXPECT_EQ(h["a.scale"]["data_offsets"], json::array({8, 12}));
  EXPECT_EQ(h["m.weight"]["data_offsets"], json::array({12, 36}));
  EXPECT_EQ(h["b.codes"]["data_offsets"], json::array({36, 39}));
  EXPECT_EQ(bytes.size(), 8 + n + 39);
  float w5;
  std::memcpy(&w5, &bytes[8 + n + 12 + 5 * 4], 4);  // raw little-endian float32
  EXPECT_EQ(w5, 5.0f);

  auto g = read_safetensors(dir + "/t.safetensors");
  EXPECT_EQ(g.metadata, f.metadata);
  ASSERT_EQ(g.tensors.size(), 4u);
  for (const auto& [name, t] : f.tensors) {
    EXPECT_EQ(g.tensors[name].dtype, t.dtype);
    EXPECT_EQ(g.tensors[name].shape, t.shape);
    EXPECT_EQ(g.tensors[name].data, t.data) << name;
  }
  EXPECT_TRUE(torch::equal(from_safetensor(g.tensors["m.weight"]), torch::arange(6, torch::kFloat32).reshape({2, 3})));
}

TEST(Safetensors, CorruptFilesAreNamedErrors) {
  const std::string dir = test_dir();
  SafetensorsFile f;
  f.tensors["w"] = to_safetensor(torch::ones({4}));
  write_safetensors(dir + "/ok.safetensors", f);
  auto good = read_bytes(dir + "/ok.safetensors");
  auto expect_bad = [&](const std::vector<uint8_t>& bytes, const std::string& needle) {
    write_bytes(dir + "/bad.safetensors", bytes);
    try {
      read_safetensors(dir + "/bad.safetensors");
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_bad({1, 2, 3}, "shorter than");
  auto huge = good;
  huge[7] = 0x7f;
  expect_bad(huge, "header length");
  auto trunc = good;
  trunc.resize(trunc.size() - 4);
  expect_bad(trunc, "outside");
  auto extra = good;
  extra.push_back(0);
  expect_bad(extra, "unindexed trailing");
  auto notjson = good;
  notjson[8] = '[';
  expect_bad(notjson, "header");
  EXPECT_THROW(read_safetensors(dir + "/missing.safetensors"), std::runtime_error);
}

TEST(Export, SizeIsExactAndVerifyPassesForEveryScheme) {
  const std::string dir = test_dir();
  int n = 0;
  for (const auto& spec : all_weight_specs()) {
    SCOPED_TRACE(spec);
    torch::manual_seed(3);
    auto m0 = make_model("lenet5", ModelConfig{1, 28, 10});
    Policy p = uniform_policy(*m0, QuantSpec::parse(spec), QuantSpec::parse("fixed:8"));
    p.layers.back().weight = QuantSpec::parse("fp32");  // an explicit float layer in the same file
    update_totals(p);
    auto m = quantized_lenet(p);
    const std::string path = dir + "/m.safetensors";
    ExportReport rep = export_model(*m, p, path);
    EXPECT_EQ(rep.weight_bytes, p.totals.weight_bytes);
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(path)), rep.file_bytes);
    auto f = read_safetensors(path);
    // independent count from the file: packed codes + dequantisation data + fc3's float weight
    EXPECT_EQ(file_weight_bytes(f) + static_cast<int64_t>(f.tensors.at("fc3.weight").data.size()), p.totals.weight_bytes);
    EXPECT_EQ(f.tensors.at("fc3.weight").dtype, "F32");
    EXPECT_EQ(f.tensors.at("conv1.weight.codes").dtype, "U8");
    EXPECT_EQ(f.header_bytes + f.data_bytes, rep.file_bytes);
    for (const auto& l : p.layers) {
      if (l.weight.is_fp()) continue;
      auto cost = quant::storage_cost(l.weight, l.shape);
      EXPECT_EQ(static_cast<int64_t>(f.tensors.at(l.name + ".weight.codes").data.size()), cost.code_bytes()) << l.name;
    }
    // biases, BN and activation-quantizer state travel in their own dtypes
    EXPECT_EQ(f.tensors.at("bn1.running_var").dtype, "F32");
    EXPECT_EQ(f.tensors.at("bn1.num_batches_tracked").dtype, "I64");
    EXPECT_EQ(f.tensors.count("fc1.bias"), 1u);
    EXPECT_EQ(Policy::from_json(json::parse(f.metadata.at("policy"))).dump(), p.dump());
    VerifyReport v = verify_export(*m, p, path);
    EXPECT_TRUE(v.ok) << (v.problems.empty() ? "" : v.problems[0]);
    EXPECT_EQ(v.layers_checked, 5);
    EXPECT_EQ(v.weights_checked, 61470);
    ++n;
  }
  EXPECT_GE(n, 40);
}

TEST(Export, VerifyCatchesTamperingAndMismatches) {
  const std::string dir = test_dir();
  torch::manual_seed(3);
  auto m0 = make_model("lenet5", ModelConfig{1, 28, 10});
  Policy p = uniform_policy(*m0, QuantSpec::parse("uniform:4"), QuantSpec::parse("fp32"));
  auto m = quantized_lenet(p);
  const std::string path = dir + "/m.safetensors";
  export_model(*m, p, path);
  ASSERT_TRUE(verify_export(*m, p, path).ok);

  // flip one code bit of fc1
  auto f = read_safetensors(path);
  f.tensors["fc1.weight.codes"].data[10] ^= 0x04;
  write_safetensors(dir + "/t1.safetensors", f);
  auto v = verify_export(*m, p, dir + "/t1.safetensors");
  EXPECT_FALSE(v.ok);
  ASSERT_FALSE(v.problems.empty());
  EXPECT_NE(v.problems[0].find("fc1"), std::string::npos) << v.problems[0];
  EXPECT_NE(v.problems[0].find("1 of 48000 values differ"), std::string::npos) << v.problems[0];

  // a BN statistic changed
  f = read_safetensors(path);
  f.tensors["bn2.running_mean"].data[0] ^= 0x01;
  write_safetensors(dir + "/t2.safetensors", f);
  v = verify_export(*m, p, dir + "/t2.safetensors");
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problems.at(0).find("bn2.running_mean"), std::string::npos);

  // a tensor missing and an extra one
  f = read_safetensors(path);
  f.tensors.erase("conv2.weight.scale");
  f.tensors["junk"] = to_safetensor(torch::ones({1}));
  write_safetensors(dir + "/t3.safetensors", f);
  v = verify_export(*m, p, dir + "/t3.safetensors");
  EXPECT_FALSE(v.ok);
  std::string all;
  for (const auto& s : v.problems) all += s + "\n";
  EXPECT_NE(all.find("conv2.weight.scale' missing"), std::string::npos) << all;
  EXPECT_NE(all.find("unexpected tensor 'junk'"), std::string::npos) << all;

  // another policy than the file's
  Policy q = uniform_policy(*m0, QuantSpec::parse("uniform:8"), QuantSpec::parse("fp32"));
  v = verify_export(*m, q, path);
  EXPECT_FALSE(v.ok);

  // export refuses a model whose installed quantizers differ from the policy, naming the layer
  try {
    export_model(*m, q, dir + "/never.safetensors");
    ADD_FAILURE();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'conv1'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/never.safetensors"));
}

TEST(Export, QuantizedCheckpointRoundTrip) {
  const std::string dir = test_dir();
  torch::manual_seed(3);
  auto m0 = make_model("lenet5", ModelConfig{1, 28, 10});
  Policy p = uniform_policy(*m0, QuantSpec::parse("apot:3"), QuantSpec::parse("pact:4"), 8);
  auto m = quantized_lenet(p);
  save_checkpoint(dir + "/q.pt", *m, quantized_meta(*m, p, "synthetic"));
  auto loaded = load_model(dir + "/q.pt", "lenet5", ModelConfig{1, 28, 10});
  ASSERT_TRUE(loaded.has_policy);
  EXPECT_EQ(loaded.meta.kind, "quantized");
  EXPECT_EQ(loaded.policy.dump(), p.dump());
  m->eval();
  loaded.model->eval();
  torch::NoGradGuard ng;
  auto x = calib_data().images.slice(0, 0, 16);
  EXPECT_TRUE(torch::equal(m->forward(x), loaded.model->forward(x)));  // learned / calibrated state restored
  export_model(*loaded.model, loaded.policy, dir + "/q.safetensors");
  EXPECT_TRUE(verify_export(*m, p, dir + "/q.safetensors").ok);
}
