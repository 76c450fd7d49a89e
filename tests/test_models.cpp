// The model zoo: shapes, names, profile, fingerprint, layers vs torch::nn, a short training run.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "autoqnn/quant_layers.h"

using namespace autoqnn;

namespace {

std::vector<std::string> layer_names(Model& m) {
  std::vector<std::string> v;
  for (const auto& l : quant_layers(m)) v.push_back(l.name);
  return v;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST(ModelZoo, EveryModelBothInputShapes) {
  ASSERT_GE(model_zoo().size(), 8u);
  for (const auto& info : model_zoo()) {
    EXPECT_FALSE(info.description.empty()) << info.name;
    for (const auto& cfg : {ModelConfig{1, 28, 10}, ModelConfig{3, 32, 10}}) {
      torch::manual_seed(0);
      auto m = make_model(info.name, cfg);
      EXPECT_EQ(m->name(), info.name);
      m->eval();
      torch::NoGradGuard ng;
      auto y = m->forward(torch::randn({2, cfg.in_channels, cfg.image_size, cfg.image_size}));
      EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, 10})) << info.name << " " << cfg.image_size;
      EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << info.name;
      // every conv / linear is a quant layer: no plain torch::nn::Conv2d / Linear inside
      for (const auto& sub : m->modules(false)) {
        EXPECT_EQ(dynamic_cast<torch::nn::Conv2dImpl*>(sub.get()), nullptr) << info.name;
        EXPECT_EQ(dynamic_cast<torch::nn::LinearImpl*>(sub.get()), nullptr) << info.name;
      }
    }
  }
  auto m = make_model("resnet20", ModelConfig{3, 32, 100});
  EXPECT_EQ(m->forward(torch::zeros({1, 3, 32, 32})).size(1), 100);
}

TEST(ModelZoo, UnknownNameListsValidOnes) {
  try {
    make_model("resnet21");
    FAIL();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("resnet21"), std::string::npos);
    for (const auto& info : model_zoo()) EXPECT_NE(msg.find(info.name), std::string::npos) << msg;
  }
  EXPECT_THROW(make_model("lenet5", ModelConfig{1, 4, 10}), std::invalid_argument);
}

TEST(ModelZoo, LayerNamesAndCounts) {
  auto r20 = make_model("resnet20", ModelConfig{3, 32, 10});
  auto names = layer_names(*r20);
  EXPECT_EQ(names.size(), 20u);  // 19 convs + fc (option-A shortcuts hold no conv)
  EXPECT_EQ(names.front(), "conv1");
  EXPECT_EQ(names.back(), "fc");
  for (const char* n : {"layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer3.2.conv2"}) EXPECT_TRUE(has(names, n)) << n;
  const auto params = r20->named_parameters();
  EXPECT_TRUE(params.contains("layer1.0.bn1.weight"));
  EXPECT_TRUE(params.contains("fc.bias"));
  EXPECT_EQ(count_parameters(*r20), 269722);  // the paper's 0.27M
  EXPECT_EQ(names.size(), 20u);

  auto lenet = make_model("lenet5");
  EXPECT_EQ(layer_names(*lenet), (std::vector<std::string>{"conv1", "conv2", "fc1", "fc2", "fc3"}));
  EXPECT_EQ(count_parameters(*lenet), 61750 - 6 - 16);  // convs without bias (BN follows)

  const std::pair<const char*, size_t> counts[] = {{"resnet8", 8},  {"resnet14", 14}, {"resnet32", 32},
                                                   {"resnet56", 56}, {"vgg7", 7},      {"mobilenetv2", 53}};
  for (const auto& [name, n] : counts) EXPECT_EQ(layer_names(*make_model(name)).size(), n) << name;

  auto mb = make_model("mobilenetv2", ModelConfig{3, 32, 10});
  auto mnames = layer_names(*mb);
  for (const char* n : {"conv1", "layers.0.conv2", "layers.0.conv3", "layers.1.conv1", "conv2", "fc"})
    EXPECT_TRUE(has(mnames, n)) << n;
  EXPECT_FALSE(has(mnames, "layers.0.conv1"));  // t = 1: no expansion conv
  auto vnames = layer_names(*make_model("vgg7"));
  EXPECT_EQ(vnames.front(), "conv1");
  EXPECT_EQ(vnames.back(), "fc");
}

TEST(ModelProfile, LeNet5MacsHandChecked) {
  auto m = make_model("lenet5");  // 1x28x28
  m->train();
  auto prof = profile_model(*m);
  ASSERT_EQ(prof.size(), 5u);
  // conv1: 28*28 out * 6 ch * 1*5*5; conv2: 10*10 * 16 * 6*5*5; fc: in*out
  const int64_t want[] = {28 * 28 * 6 * 25, 10 * 10 * 16 * 6 * 25, 400 * 120, 120 * 84, 84 * 10};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(prof[i].macs, want[i]) << prof[i].name;
  EXPECT_EQ(prof[0].kind, "conv2d");
  EXPECT_EQ(prof[2].kind, "linear");
  EXPECT_EQ(prof[0].weight_shape, (std::vector<int64_t>{6, 1, 5, 5}));
  EXPECT_EQ(prof[0].params, 150);
  EXPECT_EQ(prof[0].input_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(prof[0].output_shape, (std::vector<int64_t>{6, 28, 28}));
  EXPECT_EQ(prof[1].input_shape, (std::vector<int64_t>{6, 14, 14}));
  EXPECT_EQ(prof[1].input_numel, 6 * 14 * 14);
  EXPECT_EQ(prof[2].input_shape, (std::vector<int64_t>{400}));
  // restored: training mode and record_shapes
  EXPECT_TRUE(m->is_training());
  for (const auto& sub : m->modules(false)) EXPECT_TRUE(sub->is_training());
  for (const auto& l : quant_layers(*m)) EXPECT_FALSE(l.layer->record_shapes);
  m->eval();
  profile_model(*m);
  EXPECT_FALSE(m->is_training());

  // 32x32 RGB: conv1 without padding -> the same 28x28 map
  auto m3 = make_model("lenet5", ModelConfig{3, 32, 10});
  auto p3 = profile_model(*m3);
  EXPECT_EQ(p3[0].macs, 28 * 28 * 6 * 3 * 25);
  EXPECT_EQ(p3[2].macs, 400 * 120);

  // depthwise conv: in_ch / groups = 1
  auto mb = make_model("mobilenetv2", ModelConfig{3, 32, 10});
  for (const auto& p : profile_model(*mb))
    if (p.name == "layers.0.conv2") {
      EXPECT_EQ(p.weight_shape[1], 1);
      EXPECT_EQ(p.macs, 32 * 32 * p.weight_shape[0] * 9);
    }
}

TEST(ModelFingerprint, StableAndDistinct) {
  torch::manual_seed(1);
  auto a = make_model("resnet20");
  torch::manual_seed(2);
  auto b = make_model("resnet20");
  const auto fa = model_fingerprint(*a);
  EXPECT_EQ(fa.rfind("fnv1a64:", 0), 0u) << fa;
  EXPECT_EQ(fa.size(), 8u + 16u);
  EXPECT_EQ(fa, model_fingerprint(*b));  // weights do not matter, only names and shapes
  std::set<std::string> all;
  for (const auto& info : model_zoo()) all.insert(model_fingerprint(*make_model(info.name)));
  EXPECT_EQ(all.size(), model_zoo().size());
  EXPECT_NE(model_fingerprint(*make_model("resnet20", ModelConfig{3, 32, 10})), fa);  // conv1 shape differs
}

TEST(ModelQuantLayers, MatchTorchNnWhenUnquantized) {
  torch::manual_seed(3);
  struct Case { int64_t in, out, k, stride, pad, groups; bool bias; };
  for (const Case& c : {Case{3, 8, 3, 1, 1, 1, true}, Case{8, 8, 3, 2, 1, 8, false}, Case{4, 6, 5, 1, 0, 2, true}}) {
    QuantConv2d q(QuantConv2dOptions(c.in, c.out, c.k).stride(c.stride).padding(c.pad).groups(c.groups).bias(c.bias));
    torch::nn::Conv2d ref(
        torch::nn::Conv2dOptions(c.in, c.out, c.k).stride(c.stride).padding(c.pad).groups(c.groups).bias(c.bias));
    {
      torch::NoGradGuard ng;
      ref->weight.copy_(q->weight);
      if (c.bias) ref->bias.copy_(q->bias);
    }
    auto x = torch::randn({2, c.in, 9, 9});
    EXPECT_TRUE(torch::allclose(q->forward(x), ref->forward(x), 1e-5, 1e-6));
    EXPECT_EQ(q->weight_shape(), ref->weight.sizes().vec());
  }
  QuantLinear ql(QuantLinearOptions(7, 5));
  torch::nn::Linear rl(7, 5);
  {
    torch::NoGradGuard ng;
    rl->weight.copy_(ql->weight);
    rl->bias.copy_(ql->bias);
  }
  auto x = torch::randn({4, 7});
  EXPECT_TRUE(torch::allclose(ql->forward(x), rl->forward(x), 1e-5, 1e-6));
  // gradients flow to weight and input
  auto xi = torch::randn({4, 7}, torch::requires_grad());
  ql->forward(xi).sum().backward();
  EXPECT_TRUE(ql->weight.grad().defined());
  EXPECT_TRUE(xi.grad().defined());
}

TEST(ModelTraining, LeNet5LearnsSyntheticSet) {
  torch::manual_seed(0);
  DataOptions o;
  o.dataset = "synthetic";
  o.seed = 1;
  auto s = load_splits(o);
  auto m = make_model("lenet5");
  torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  BatchIterator it(s.train, 64, /*shuffle=*/true, /*seed=*/7);
  int64_t step = 0, epoch = 0;
  m->train();
  while (step < 300) {
    it.start_epoch(epoch++);
    torch::Tensor x, y;
    while (step < 300 && it.next(x, y)) {
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(m->forward(x), y);
      loss.backward();
      opt.step();
      ++step;
    }
  }
  m->eval();
  torch::NoGradGuard ng;
  const double acc = m->forward(s.test.images).argmax(1).eq(s.test.labels).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(acc, 0.6) << "chance is 0.1";
  std::cout << "[          ] lenet5 synthetic test accuracy after 300 steps: " << acc << "\n";
}
