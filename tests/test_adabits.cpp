// AdaBits: switchable BatchNorm, switchable quantizers, the plan, checkpoints, policies and the CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "autoqnn/adabits.h"
#include "autoqnn/model_io.h"
#include "autoqnn/switchable_bn.h"
#include "quantizers/registry.h"

namespace fs = std::filesystem;
using namespace autoqnn;

namespace {
// Not std::filesystem::remove_all: with the pip LibTorch on GPU machines its libtorch.so interposes an
// incompatible std::filesystem::remove_all (segfault).
void remove_tree(const std::string& d) {
  if (std::system(("rm -rf '" + d + "'").c_str()) != 0) ADD_FAILURE() << "rm -rf " << d;
}
std::string tmp_dir(const std::string& name) {
  auto d = (fs::path(AUTOQNN_TEST_TMP) / (name + "_" + std::to_string(::getpid()))).string();
  remove_tree(d);
  fs::create_directories(d);
  return d;
}
int run_cli(const std::string& args, std::string* out = nullptr) {
  std::string cmd = std::string(AUTOQNN_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
  int st = pclose(p);
  if (out) *out = s;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
}  // namespace

TEST(AdaBits, SwitchableBatchNormSelectsPerBitwidth) {
  SwitchableBatchNorm2d bn(2);
  torch::NoGradGuard ng;
  bn->weight.copy_(torch::tensor({2.f, 3.f}));
  bn->running_var.fill_(4.0);
  bn->make_switchable({8, 4});
  // Copies of the base state, independent afterwards.
  EXPECT_TRUE(torch::equal(bn->at_bits(4)->weight, torch::tensor({2.f, 3.f})));
  bn->at_bits(4)->weight.fill_(1.0);
  bn->at_bits(4)->bias.fill_(0.5);
  auto x = torch::ones({1, 2, 1, 1}) * 2.0;
  bn->eval();
  const double s = 2.0 / std::sqrt(4.0 + 1e-5);  // x / sqrt(var + eps)
  bn->select(8);
  auto y8 = bn->forward(x);
  EXPECT_NEAR(y8[0][0][0][0].item<double>(), 2 * s, 1e-5);
  EXPECT_NEAR(y8[0][1][0][0].item<double>(), 3 * s, 1e-5);
  bn->select(4);
  auto y4 = bn->forward(x);
  EXPECT_NEAR(y4[0][1][0][0].item<double>(), s + 0.5, 1e-5);
  // Training at 4 bits updates only the 4-bit running statistics.
  bn->train();
  bn->forward(torch::randn({8, 2, 3, 3}) + 5.0);
  EXPECT_GT(bn->at_bits(4)->running_mean.abs().min().item<double>(), 0.1);
  EXPECT_EQ(bn->at_bits(8)->running_mean.abs().max().item<double>(), 0.0);
  EXPECT_EQ(bn->running_mean.abs().max().item<double>(), 0.0);
  EXPECT_EQ(bn->at_bits(4)->num_batches_tracked.item<int64_t>(), 1);
  EXPECT_EQ(bn->at_bits(8)->num_batches_tracked.item<int64_t>(), 0);
  // Names for checkpoints, errors.
  auto names = bn->named_parameters().keys();
  EXPECT_NE(std::find(names.begin(), names.end(), "b4.weight"), names.end());
  EXPECT_THROW(bn->select(5), std::invalid_argument);
  EXPECT_THROW(bn->make_switchable({8, 5}), std::invalid_argument);
  EXPECT_NO_THROW(bn->make_switchable({8, 4}));
  SwitchableBatchNorm2d b2(2);
  EXPECT_THROW(b2->make_switchable({4, 4}), std::invalid_argument);
}

TEST(AdaBits, SwitchableQuantizerHasOneClipPerBitwidth) {
  SwitchableQuantizer q(quant::Role::Activation, quant::QuantSpec::parse("pact:8:alpha=2"), {8, 4});
  auto x = torch::linspace(-1, 3, 41);
  EXPECT_TRUE(torch::equal(q.forward(x), x));  // selected 0: identity
  q.calibrate_next = true;
  q.select(4);
  auto y4 = q.forward(x);
  // Calibrated: alpha = the 99.9th percentile of x = 3 on both per-bit quantizers.
  EXPECT_NEAR(q.at_bits(4)->named_parameters()["alpha"].item<double>(), 3.0, 1e-6);
  EXPECT_NEAR(q.at_bits(8)->named_parameters()["alpha"].item<double>(), 3.0, 1e-6);
  EXPECT_EQ(std::get<0>(torch::_unique(y4)).numel(), 16);  // 2^4 levels on [0, 3]
  q.select(8);
  EXPECT_GT(std::get<0>(torch::_unique(q.forward(x))).numel(), 16);
  EXPECT_EQ(q.named_parameters().size(), 2u);  // b8.alpha, b4.alpha
  EXPECT_THROW(q.select(6), std::invalid_argument);
  EXPECT_THROW(SwitchableQuantizer(quant::Role::Activation, quant::QuantSpec::parse("pact:8"), {9}),
               std::invalid_argument);
  EXPECT_THROW(parse_bits_list("8,x"), std::invalid_argument);
  EXPECT_THROW(parse_bits_list("8,8"), std::invalid_argument);
  EXPECT_THROW(parse_bits_list("8,4.5"), std::invalid_argument);
  EXPECT_THROW(parse_bits_list("8,1e300"), std::invalid_argument);
  EXPECT_EQ(parse_bits_list("8,6,5,4"), (std::vector<int>{8, 6, 5, 4}));
}

TEST(AdaBits, PlanFollowsModelStructure) {
  torch::manual_seed(0);
  auto m = make_model("lenet5", {1, 28, 10});
  auto bns = following_batchnorm(*m);
  ASSERT_EQ(bns.size(), 5u);
  EXPECT_EQ(bns[0], std::make_pair(std::string("conv1"), std::string("bn1")));
  EXPECT_EQ(bns[1].second, "bn2");
  EXPECT_EQ(bns[4].second, "");
  auto plan = make_adabits_plan(*m, {8, 4}, torch::randn({4, 1, 28, 28}));
  EXPECT_EQ(plan.layers[0].weight.to_string(), "sat:8");
  EXPECT_TRUE(plan.layers[0].act.is_fp());  // the (signed) image
  EXPECT_EQ(plan.layers[1].act.to_string(), "pact:8");  // after ReLU + pool
  EXPECT_EQ(plan.layers[2].weight.to_string(), "sat:8:rescale");
  EXPECT_EQ(plan.weight_at(2, 4).to_string(), "sat:4:rescale");
  auto back = AdaBitsPlan::from_json(plan.to_json(), "test");
  EXPECT_EQ(back.to_json(), plan.to_json());
  auto r8 = make_model("resnet8", {1, 28, 10});
  auto rb = following_batchnorm(*r8);
  EXPECT_EQ(rb.front().second, "bn1");
  EXPECT_EQ(rb[1].second, "layer1.0.bn1");
  EXPECT_EQ(rb.back().second, "");  // fc
}

TEST(AdaBits, CheckpointBitsAndPolicies) {
  const auto dir = tmp_dir("adabits_ckpt");
  const ModelConfig cfg{1, 28, 10};
  torch::manual_seed(1);
  auto m = make_model("lenet5", cfg);
  auto x = torch::randn({6, 1, 28, 28});
  auto y = torch::randint(0, 10, {6});
  auto plan = make_adabits_plan(*m, {8, 4}, x);
  install_adabits(*m, plan);
  TensorDataset ds{x, y};
  EXPECT_EQ(calibrate_adabits(*m, ds, 1, 6, 1, torch::kCPU), 6);
  // One training-mode pass per bitwidth makes the per-bit BatchNorm statistics differ.
  torch::Tensor logits;
  {
    torch::NoGradGuard ng;
    m->train();
    adabits_loss(*m, plan.bits, x, y, logits);
  }
  m->eval();
  // The summed loss is the sum of the per-bit losses.
  torch::Tensor l8, l4, lg;
  {
    torch::NoGradGuard ng;
    select_bits(*m, 8);
    l8 = torch::nn::functional::cross_entropy(m->forward(x), y);
    auto out8 = m->forward(x);
    select_bits(*m, 4);
    l4 = torch::nn::functional::cross_entropy(m->forward(x), y);
    auto sum = adabits_loss(*m, {8, 4}, x, y, lg);
    EXPECT_NEAR(sum.item<double>(), (l8.item<double>() + l4.item<double>()) / 2, 1e-5);
    EXPECT_TRUE(torch::equal(lg, out8));
  }
  EXPECT_NE(l8.item<double>(), l4.item<double>());
  const std::string path = dir + "/ada.pt";
  save_checkpoint(path, *m, adabits_meta(*m, plan, "synthetic", 1));

  for (int b : {8, 4}) {
    auto loaded = load_model(path, "lenet5", cfg, "", b);
    loaded.model->eval();
    select_bits(*m, b);
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::equal(loaded.model->forward(x), m->forward(x))) << b;
    EXPECT_EQ(loaded.active_bits, b);
    EXPECT_EQ(loaded.policy.layers[2].weight.to_string(), "sat:" + std::to_string(b) + ":rescale");
  }
  EXPECT_THROW(load_model(path, "lenet5", cfg), std::runtime_error);         // needs --bits or a policy
  EXPECT_THROW(load_model(path, "lenet5", cfg, "", 5), std::runtime_error);  // not listed

  // A mixed policy: conv2 at 4 bits, everything else at 8 -> conv2's slots and bn2 at 4, bn1 at 8.
  auto pol = adabits_policy(*m, plan, 8);
  pol.find("conv2")->weight = quant::QuantSpec::parse("sat:4");
  pol.find("conv2")->act = quant::QuantSpec::parse("pact:4");
  update_totals(pol);
  save_policy(dir + "/mixed.json", pol);
  auto mixed = load_model(path, "lenet5", cfg, dir + "/mixed.json");
  auto mods = mixed.model->named_modules();
  EXPECT_EQ(std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(mods["bn2"])->selected(), 4);
  EXPECT_EQ(std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(mods["bn1"])->selected(), 8);
  EXPECT_EQ(std::dynamic_pointer_cast<SwitchableQuantizer>(mods["conv2.wq"])->selected(), 4);
  EXPECT_EQ(std::dynamic_pointer_cast<SwitchableQuantizer>(mods["fc1.wq"])->selected(), 8);
  // A spec the model was not trained with is refused, naming the layer.
  pol.find("fc1")->weight = quant::QuantSpec::parse("sat:4");  // lacks :rescale
  update_totals(pol);
  save_policy(dir + "/bad.json", pol);
  try {
    load_model(path, "lenet5", cfg, dir + "/bad.json");
    FAIL() << "expected a PolicyError";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << e.what();
  }

  // Search warm start: an FP32 checkpoint with the latent weights and the mean per-bit BatchNorm.
  adabits_warm_start(path, dir + "/warm.pt");
  auto warm = load_model(dir + "/warm.pt", "lenet5", cfg);
  EXPECT_EQ(warm.meta.kind, "fp32");
  auto wbn = std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(warm.model->named_modules()["bn2"]);
  auto abn = std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(m->named_modules()["bn2"]);
  EXPECT_TRUE(torch::allclose(wbn->running_mean,
                              (abn->at_bits(8)->running_mean + abn->at_bits(4)->running_mean) / 2, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(warm.model->named_parameters()["fc1.weight"], m->named_parameters()["fc1.weight"]));
  remove_tree(dir);
}

TEST(AdaBits, CliTrainAndEvalAtEachBitwidth) {
  const auto dir = tmp_dir("adabits_cli");
  const std::string common = "--dataset synthetic --train-limit 256 --test-limit 128 --batch-size 64 --threads 1";
  std::string out;
  ASSERT_EQ(run_cli("train --model lenet5 " + common + " --epochs 1 --out " + dir + "/fp.pt", &out), 0) << out;
  ASSERT_EQ(run_cli("train --model lenet5 " + common + " --adabits 8,4 --checkpoint " + dir + "/fp.pt --epochs 1 " +
                        "--calib-batches 1 --out " + dir + "/ada.pt",
                    &out),
            0)
      << out;
  EXPECT_NE(out.find("test top-1 at 4 bits"), std::string::npos) << out;
  auto meta = read_checkpoint_meta(dir + "/ada.pt");
  EXPECT_EQ(meta.kind, "adabits");
  EXPECT_EQ(meta.extra["adabits"]["bits"], nlohmann::json({8, 4}));
  for (int b : {8, 4}) {
    ASSERT_EQ(run_cli("eval " + common + " --checkpoint " + dir + "/ada.pt --bits " + std::to_string(b) + " --json",
                      &out),
              0)
        << out;
    auto j = nlohmann::json::parse(out.substr(out.find('{')));
    EXPECT_EQ(j["bits"], b);
    EXPECT_EQ(j["n"], 128);
    EXPECT_LT(j["avg_weight_bits"].get<double>(), b + 1.0);
  }
  EXPECT_NE(run_cli("eval " + common + " --checkpoint " + dir + "/ada.pt", &out), 0);
  EXPECT_NE(out.find("--bits"), std::string::npos) << out;
  EXPECT_NE(run_cli("eval " + common + " --checkpoint " + dir + "/ada.pt --bits 5", &out), 0);
  EXPECT_NE(out.find("8,4"), std::string::npos) << out;
  EXPECT_NE(run_cli("eval " + common + " --checkpoint " + dir + "/fp.pt --bits 4", &out), 0);
  EXPECT_NE(run_cli("train --model lenet5 " + common + " --adabits 8,1 --checkpoint " + dir + "/fp.pt --out " + dir +
                        "/x.pt",
                    &out),
            0);
  EXPECT_NE(out.find("out of range"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/x.pt"));
  EXPECT_NE(run_cli("train --model lenet5 " + common + " --adabits 8,4 --out " + dir + "/x.pt", &out), 0);
  remove_tree(dir);
}
