// ONNX export: the zoo's graph descriptions reproduce forward(); exported files pass the ONNX checker and
// strict shape inference, and ONNX Runtime (scripts/ort, npm onnxruntime-node) gives our logits.
// Only where the ONNX library is built (Debian's libonnx; a bundled-deps CUDA machine has none).
#ifdef AUTOQNN_WITH_ONNX
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/convert.h"
#include "autoqnn/data.h"
#include "autoqnn/model_graph.h"
#include "autoqnn/onnx/onnx_export.h"
#include "autoqnn/onnx/onnx_verify.h"
#include "autoqnn/policy.h"
#include "quantizers/registry.h"

namespace fs = std::filesystem;
using namespace autoqnn;
using quant::QuantSpec;

namespace {

std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path d = fs::path(AUTOQNN_TEST_TMP) / ("onnx_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
  autoqnn_test::remove_tree(d.string());
  fs::create_directories(d);
  return d.string();
}

// Synthetic data of the model's input shape (calibration and the compared images).
Splits data_for(const ModelConfig& cfg) {
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = 128;
  d.test_limit = 64;
  Splits s = load_splits(d);
  if (cfg.in_channels != s.test.images.size(1) || cfg.image_size != s.test.images.size(2)) {
    torch::manual_seed(11);  // another input shape: random images with the same labels
    for (auto* t : {&s.full_train, &s.test})
      t->images = torch::randn({t->size(), cfg.in_channels, cfg.image_size, cfg.image_size});
  }
  return s;
}

ModelConfig config_of(const std::string& model) {
  return model == "lenet5" ? ModelConfig{1, 28, 10} : ModelConfig{3, 32, 10};
}

// `model` with `policy` (built from the fresh model by make_policy) installed and calibrated.
struct Quantized {
  ModelPtr model;
  Policy policy;
  Splits data;
};
Quantized quantize(const std::string& name, const std::function<Policy(Model&)>& make_policy) {
  torch::manual_seed(3);
  Quantized q;
  q.model = make_model(name, config_of(name));
  q.data = data_for(config_of(name));
  // Non-trivial BatchNorm statistics so that folding is exercised.
  for (auto& m : q.model->modules(false))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) {
      torch::NoGradGuard ng;
      bn->running_mean.uniform_(-0.2, 0.2);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  q.policy = make_policy(*q.model);
  CalibOptions co;
  co.batches = 2;
  co.batch_size = 64;
  convert_model(*q.model, q.policy, &q.data.full_train, co);
  return q;
}

bool have_ort() {
  std::string why;
  return !find_ort_runner(&why).empty();
}
#define REQUIRE_ORT()                                                                                      \
  do {                                                                                                     \
    std::string why;                                                                                       \
    if (find_ort_runner(&why).empty())                                                                     \
      GTEST_SKIP() << "ONNX Runtime missing (" << why << "); scripts/test.sh installs it (scripts/install-ort.sh)"; \
  } while (0)

// Exports, runs in ONNX Runtime, checks the tolerance and returns the comparison.
// rel > 0: logit differences are checked relative to max |logit| (random untrained models can have large
// logits), instead of the CLI's absolute 1e-4.
LogitsComparison export_and_run(Quantized& q, const std::string& path, OnnxExportReport* rep_out = nullptr,
                                double rel = 0) {
  ModelGraph g = zoo_model_graph(*q.model);
  OnnxExportReport rep = export_onnx(*q.model, g, q.policy, path);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(path)), rep.file_bytes);
  EXPECT_EQ(rep.policy_weight_bytes, q.policy.totals.weight_bytes);
  EXPECT_EQ(rep.layers.size(), q.policy.layers.size());
  if (rep_out) *rep_out = rep;
  OnnxVerifyResult v = verify_onnx(*q.model, g, rep, path, q.data.test);
  if (rel > 0) {
    q.model->eval();
    torch::NoGradGuard ng;
    const double scale = std::max(1.0, q.model->forward(q.data.test.images).abs().max().item<double>());
    EXPECT_LE(v.exact.max_abs_diff, rel * scale);
    EXPECT_LE(v.deployed.max_abs_diff, rel * scale);
    EXPECT_EQ(v.exact.argmax_diffs, 0);
    return v.deployed;
  }
  EXPECT_TRUE(v.ok) << "as written: max |diff| " << v.exact.max_abs_diff << ", top-1 " << v.exact.top1_ours << " vs "
                    << v.exact.top1_ort << "; deployed: max |diff| " << v.deployed.max_abs_diff << " (" << v.rule
                    << "), top-1 " << v.deployed.top1_ort;
  EXPECT_LE(v.exact.max_abs_diff, 1e-4);  // the graph's semantics are ours, activation QDQ included
  EXPECT_EQ(v.exact.argmax_diffs, 0);
  EXPECT_EQ(v.exact.n, 64);
  return v.deployed;
}

Policy uniform4(Model& m) { return uniform_policy(m, QuantSpec::parse("uniform:4"), QuantSpec::parse("fp32")); }
Policy w4a4(Model& m) { return uniform_policy(m, QuantSpec::parse("uniform:4"), QuantSpec::parse("uniform:4")); }
// Four schemes in turn over the layers: affine (per-channel), power-of-two, ESB, fixed point; one fp32 layer.
Policy mixed(Model& m) {
  Policy p = uniform_policy(m, QuantSpec::parse("uniform:4"), QuantSpec::parse("fp32"));
  const char* cycle[] = {"uniform:4:per_channel", "pot:3", "esb:5:k=2", "fixed:6", "apot:4", "twn"};
  for (size_t i = 0; i < p.layers.size(); ++i) p.layers[i].weight = QuantSpec::parse(cycle[i % 6]);
  p.layers[1].weight = QuantSpec::parse("fp32");
  update_totals(p);
  return p;
}

}  // namespace

TEST(OnnxGraph, ZooDescriptionsReproduceForward) {
  for (const char* name : {"lenet5", "resnet20", "vgg7", "mobilenetv2"}) {
    SCOPED_TRACE(name);
    torch::manual_seed(5);
    auto m = make_model(name, config_of(name));
    m->eval();
    auto x = torch::randn({2, config_of(name).in_channels, 32, 32}).narrow(2, 0, config_of(name).image_size)
                 .narrow(3, 0, config_of(name).image_size).contiguous();
    torch::NoGradGuard ng;
    ModelGraph g = zoo_model_graph(*m);
    EXPECT_TRUE(torch::equal(run_model_graph(g, x), m->forward(x)));
    EXPECT_EQ(g.num_classes, 10);
  }
}

TEST(OnnxExport, LeNetAndResNetUniform4MatchOnnxRuntime) {
  REQUIRE_ORT();
  const std::string dir = test_dir();
  for (const char* name : {"lenet5", "resnet20"}) {
    SCOPED_TRACE(name);
    Quantized q = quantize(name, uniform4);
    OnnxExportReport rep;
    LogitsComparison c = export_and_run(q, dir + "/" + name + ".onnx", &rep);
    EXPECT_LE(c.max_abs_diff, 1e-4);
    EXPECT_EQ(c.argmax_diffs, 0);
    EXPECT_EQ(rep.act_qdq, 0);
    // int8 codes one per byte + per-channel (BN-folded) or per-tensor scales
    for (const auto& l : rep.layers) EXPECT_EQ(l.weight_form.rfind("int8 DequantizeLinear", 0), 0u) << l.name;
    EXPECT_GT(rep.onnx_weight_bytes, rep.policy_weight_bytes);  // 1 byte per 4-bit code (no INT4 in ONNX 1.12)
    EXPECT_LT(rep.onnx_weight_bytes, 2 * rep.policy_weight_bytes + 4096);
  }
}

TEST(OnnxExport, MixedSchemesMatchOnnxRuntime) {
  REQUIRE_ORT();
  const std::string dir = test_dir();
  for (const char* name : {"lenet5", "resnet20"}) {
    SCOPED_TRACE(name);
    Quantized q = quantize(name, mixed);
    OnnxExportReport rep;
    LogitsComparison c = export_and_run(q, dir + "/" + name + ".onnx", &rep);
    EXPECT_LE(c.max_abs_diff, 1e-4);
    std::set<std::string> forms;
    for (const auto& l : rep.layers) forms.insert(l.weight_form.substr(0, l.weight_form.find('(')));
    EXPECT_TRUE(forms.count("uint8 codes + Gather")) << "a non-uniform scheme goes through a level table";
    EXPECT_TRUE(forms.count("float32"));
    EXPECT_GE(forms.size(), 3u);
  }
}

TEST(OnnxExport, W4A4WithActivationQdqMatchesOnnxRuntime) {
  REQUIRE_ORT();
  const std::string dir = test_dir();
  for (const char* name : {"lenet5", "resnet20"}) {
    SCOPED_TRACE(name);
    Quantized q = quantize(name, w4a4);
    OnnxExportReport rep;
    LogitsComparison c = export_and_run(q, dir + "/" + name + ".onnx", &rep);
    EXPECT_EQ(rep.act_qdq, static_cast<int64_t>(q.policy.layers.size()));
    for (const auto& l : rep.layers) {
      EXPECT_GT(l.act_scale, 0) << l.name;
      EXPECT_NE(l.act_form.find("QDQ uint8"), std::string::npos) << l.name;
    }
    EXPECT_GT(c.tolerance, 1e-4);  // one output step, not float rounding
    EXPECT_LE(c.max_abs_diff, c.tolerance);
  }
}

TEST(OnnxExport, EveryWeightSchemeExportsAndRunsOnLeNet) {
  REQUIRE_ORT();
  const std::string dir = test_dir();
  int n = 0;
  for (const auto& t : quant::scheme_table()) {
    if (!t.weight_ok) continue;
    for (int b : quant::valid_bits(QuantSpec::parse(t.name), quant::Role::Weight)) {
      if (b > 8 || (b != quant::valid_bits(QuantSpec::parse(t.name), quant::Role::Weight).front() && b != 4)) continue;
      const std::string spec = std::string(t.name) + ":" + std::to_string(b);
      SCOPED_TRACE(spec);
      Quantized q = quantize("lenet5", [&](Model& m) {
        return uniform_policy(m, QuantSpec::parse(spec), QuantSpec::parse("fp32"));
      });
      export_and_run(q, dir + "/m.onnx", nullptr, /*rel=*/2e-6);
      ++n;
    }
  }
  EXPECT_GE(n, 15);
}

TEST(OnnxExport, UnexpressibleSchemeIsANamedError) {
  const std::string dir = test_dir();
  Quantized q = quantize("lenet5", [](Model& m) {
    Policy p = uniform_policy(m, QuantSpec::parse("uniform:4"), QuantSpec::parse("fp32"));
    p.layers[2].act = QuantSpec::parse("apot:4");  // non-uniform activation levels
    update_totals(p);
    return p;
  });
  ModelGraph g = zoo_model_graph(*q.model);
  try {
    export_onnx(*q.model, g, q.policy, dir + "/bad.onnx");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("layer 'fc1'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("apot:4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not uniform"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir + "/bad.onnx"));
  // The zoo description names a model it does not know.
  struct Other : Model {
    Other() : Model("mystery", {}) {}
    torch::Tensor forward(const torch::Tensor& x) override { return x; }
  } other;
  EXPECT_THROW(zoo_model_graph(other), std::invalid_argument);
  (void)have_ort;
}

TEST(OnnxExport, CliVerifiesInOnnxRuntimeAndRefusesUnexpressibleSchemes) {
  REQUIRE_ORT();
  const std::string dir = test_dir();
  Quantized q = quantize("lenet5", w4a4);
  save_checkpoint(dir + "/q.pt", *q.model, quantized_meta(*q.model, q.policy, "synthetic"));
  auto r = autoqnn_test::run_cli("export --checkpoint " + dir + "/q.pt --format onnx --out " + dir +
                                 "/q.onnx --verify --dataset synthetic --verify-images 32 --threads 1");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("verify OK in ONNX Runtime"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on 32 test images"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("policy packed " + std::to_string(q.policy.totals.weight_bytes)), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir + "/q.onnx"));
  EXPECT_FALSE(fs::exists(dir + "/q.onnx.verify-tmp"));

  Quantized bad = quantize("lenet5", [](Model& m) {
    return uniform_policy(m, QuantSpec::parse("uniform:4"), QuantSpec::parse("apot:4"));
  });
  save_checkpoint(dir + "/bad.pt", *bad.model, quantized_meta(*bad.model, bad.policy, "synthetic"));
  r = autoqnn_test::run_cli("export --checkpoint " + dir + "/bad.pt --format onnx --out " + dir + "/bad.onnx");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("layer 'conv1' activation scheme 'apot:4'"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir + "/bad.onnx"));
}
#endif  // AUTOQNN_WITH_ONNX
