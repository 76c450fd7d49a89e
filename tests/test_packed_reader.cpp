// examples/read_packed.py (numpy only, the layout of docs/policy.md) decodes a packed export to the
// model's fake-quantized weights exactly: the layout is specified well enough for another language.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "autoqnn/convert.h"
#include "autoqnn/data.h"
#include "autoqnn/export.h"
#include "autoqnn/policy.h"

namespace fs = std::filesystem;
using namespace autoqnn;
using quant::QuantSpec;

TEST(PackedReader, PythonReaderDecodesEveryLayerBitForBit) {
  if (std::system((autoqnn_test::python() + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0) GTEST_SKIP() << "python3 numpy missing";
  const fs::path dir = fs::path(AUTOQNN_TEST_TMP) / ("packed_reader_" + std::to_string(::getpid()));
  autoqnn_test::remove_tree(dir.string());
  fs::create_directories(dir / "ref");
  torch::manual_seed(3);
  auto m = make_model("lenet5", ModelConfig{1, 28, 10});
  // per-tensor affine with offset, per-channel level tables, a 3-bit odd width, a half grid, fp32
  Policy p = uniform_policy(*m, QuantSpec::parse("uniform:3:asym"), QuantSpec::parse("fp32"));
  p.layers[1].weight = QuantSpec::parse("esb:4:k=1:per_channel");
  p.layers[2].weight = QuantSpec::parse("apot:4");
  p.layers[3].weight = QuantSpec::parse("vecq:3:per_channel");
  p.layers[4].weight = QuantSpec::parse("fp32");
  update_totals(p);
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = 128;
  d.test_limit = 8;
  auto splits = load_splits(d);
  CalibOptions co;
  co.batches = 1;
  co.batch_size = 64;
  convert_model(*m, p, &splits.full_train, co);
  const std::string file = (dir / "m.safetensors").string();
  ExportReport rep = export_model(*m, p, file);
  EXPECT_LT(rep.header_bytes, 4400);  // the policy is stored compactly (measured 4048 B)
  m->eval();
  torch::NoGradGuard ng;
  for (const auto& nl : quant_layers(*m)) {
    auto w = nl.layer->effective_weight().to(torch::kFloat32).contiguous();
    std::ofstream os(dir / "ref" / (nl.name + ".f32"), std::ios::binary);
    os.write(static_cast<const char*>(w.data_ptr()), static_cast<std::streamsize>(w.numel() * 4));
  }
  const std::string cmd = autoqnn_test::python() + " " + std::string(AUTOQNN_SOURCE_DIR) + "/examples/read_packed.py " + file +
                          " --compare " + (dir / "ref").string() + " 2>&1";
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[512];
  while (fgets(buf, sizeof buf, f)) out += buf;
  const int rc = pclose(f);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("5 passed, 0 failed"), std::string::npos) << out;
  autoqnn_test::remove_tree(dir.string());
}
