// Supernet + QSS search: search spaces, mixed quantizers, exact costs, derivation (argmax + repair),
// the bilevel search on LeNet-5 with the synthetic dataset (budget met, E[size] driven to a tight budget,
// repeatability, resume, --from-state), and the `autoqnn search` CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "test_fixtures.h"
#include "test_util.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "autoqnn/sensitivity.h"
#include "quantizers/registry.h"
#include "search/constraints.h"
#include "search/mixed_quantizer.h"
#include "search/qss.h"
#include "search/search_driver.h"
#include "search/search_space.h"
#include "search/supernet.h"

namespace fs = std::filesystem;
using namespace autoqnn;
using namespace autoqnn::search;
using nlohmann::json;
using quant::QuantSpec;
using quant::Role;

namespace {

std::string tmp_dir() {
  static std::string d = autoqnn_test::make_tmp_dir("search");
  return d;
}

std::string write_file(const std::string& name, const std::string& text) {
  std::string path = tmp_dir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

using autoqnn_test::contains;
using autoqnn_test::error_of;

const ModelConfig kCfg = autoqnn_test::kSyntheticCfg;

// An FP32 LeNet-5 checkpoint (briefly trained on the synthetic set so the search has a signal).
const std::string& fp32_checkpoint() {
  static std::string path = autoqnn_test::train_synthetic_lenet5(tmp_dir() + "/lenet5_fp32.pt");
  return path;
}

// A small space: fc-heavy LeNet-5 gives the budget something to trade.
const char* kTinySpace = R"({
  "name": "tiny", "granularity": "per-layer",
  "weight": ["binary", "twn", "fixed:{2,3,4,8}"],
  "act": ["fp32"]
})";

const std::string& tiny_space() {
  static std::string p = write_file("tiny_space.json", kTinySpace);
  return p;
}

SearchOptions tiny_options(const std::string& tag) {
  SearchOptions o;
  o.method = "qss";
  o.model = "lenet5";
  o.checkpoint = fp32_checkpoint();
  o.space_path = tiny_space();
  o.data.dataset = "synthetic";
  o.data.train_limit = 600;  // train 500 / val 100
  o.batch_size = 50;
  o.epochs = 3;
  o.warmup = 1;
  o.seed = 7;
  o.lr = 0.02;
  o.arch.lr = 0.1;
  o.penalty.eta = 0.2;
  o.calib_batches = 1;
  o.out = tmp_dir() + "/" + tag + ".json";
  o.state = tmp_dir() + "/" + tag + ".state.pt";
  return o;
}

ChoiceProblem tiny_problem() {
  auto space = SearchSpace::load(tiny_space());
  Supernet net(make_model("lenet5", kCfg), space);
  return net.choice_problem();
}

// The maximum of each cost over all policies.
Cost maximum_cost(const ChoiceProblem& p) {
  Cost m;
  for (const auto& g : p.groups) {
    double w = 0, a = 0, b = 0;
    for (const auto& c : g.cost) {
      w = std::max(w, c.weight_bytes);
      a = std::max(a, c.act_bytes);
      b = std::max(b, c.bops);
    }
    m.weight_bytes += w;
    m.act_bytes = std::max(m.act_bytes, a);
    m.bops += b;
  }
  return m;
}

json layers_of(const Policy& p) {
  json j = p.to_json();
  return j["layers"];
}

}  // namespace

// ================================================================= search space
TEST(SearchSpace, ExpandsBraceSets) {
  EXPECT_EQ(expand_braces("esb:{3,4,5}:k=1"), (std::vector<std::string>{"esb:3:k=1", "esb:4:k=1", "esb:5:k=1"}));
  EXPECT_EQ(expand_braces("fixed:{2..4}"), (std::vector<std::string>{"fixed:2", "fixed:3", "fixed:4"}));
  EXPECT_EQ(expand_braces("fixed:{2,5..6}"), (std::vector<std::string>{"fixed:2", "fixed:5", "fixed:6"}));
  EXPECT_EQ(expand_braces("afp:{4,5}:e={1,2}").size(), 4u);
  EXPECT_EQ(expand_braces("twn"), (std::vector<std::string>{"twn"}));
  for (const char* bad : {"fixed:{}", "fixed:{2,}", "fixed:{4..2}", "fixed:{a}", "fixed:{2", "fixed:2}", "fixed:{2,2}"})
    EXPECT_THROW(expand_braces(bad), std::invalid_argument) << bad;
  EXPECT_TRUE(glob_match("layer*.conv?", "layer2.0.conv1"));
  EXPECT_FALSE(glob_match("layer*.conv?", "layer2.0.bn1"));
  EXPECT_TRUE(glob_match("*", "fc"));
}

TEST(SearchSpace, ParsesAndCanonicalises) {
  auto s = SearchSpace::from_json(json::parse(R"({"weight": ["esb:{3,4}:k=1", "ternary", "fixed"],
                                                   "act": ["pact:{4,8}"], "granularity": "shared"})"));
  ASSERT_EQ(s.base.weight.size(), 4u);
  EXPECT_EQ(s.base.weight[0].to_string(), "esb:3:k=1");
  EXPECT_EQ(s.base.weight[2].to_string(), "twn:2");   // alias + default bits
  EXPECT_EQ(s.base.weight[3].to_string(), "fixed:8");
  EXPECT_EQ(s.base.act.size(), 2u);
  EXPECT_EQ(s.granularity, Granularity::Shared);
  auto noact = SearchSpace::from_json(json::parse(R"({"weight": ["twn"]})"));
  EXPECT_TRUE(noact.base.act.at(0).is_fp());
}

TEST(SearchSpace, ErrorsNameTheKey) {
  auto err = [](const char* text) {
    return error_of([&] { SearchSpace::from_json(json::parse(text), "sp.json"); });
  };
  EXPECT_TRUE(contains(err(R"({"wieght": ["twn"]})"), "wieght")) << err(R"({"wieght": ["twn"]})");
  EXPECT_TRUE(contains(err(R"({"act": ["fp32"]})"), "weight"));
  EXPECT_TRUE(contains(err(R"({"weight": []})"), "weight"));
  std::string e = err(R"({"weight": ["twn", "fixed:{1,2}"]})");  // fixed starts at 2 bits
  EXPECT_TRUE(contains(e, "sp.json") && contains(e, "weight[1]") && contains(e, "fixed:1")) << e;
  e = err(R"({"weight": ["nosuch:4"]})");
  EXPECT_TRUE(contains(e, "weight[0]") && contains(e, "nosuch")) << e;
  e = err(R"({"weight": ["pact:4"]})");  // activation-only scheme
  EXPECT_TRUE(contains(e, "weight[0]") && contains(e, "pact")) << e;
  e = err(R"({"weight": ["esb:{3,4}:k=2"]})");  // k=2 needs >= 4 bits: the scheme's own check
  EXPECT_TRUE(contains(e, "weight[0]") && contains(e, "esb:3:k=2")) << e;
  e = err(R"({"weight": ["fixed:4", "fixed:{3,4}"]})");
  EXPECT_TRUE(contains(e, "weight[1]") && contains(e, "repeats weight[0]")) << e;
  e = err(R"({"weight": ["twn"], "granularity": "per-block"})");
  EXPECT_TRUE(contains(e, "granularity") && contains(e, "per-block")) << e;
  e = err(R"({"weight": ["twn"], "overrides": [{"weight": ["fixed:8"]}]})");
  EXPECT_TRUE(contains(e, "overrides[0].layers")) << e;
  e = err(R"({"weight": ["twn"], "overrides": [{"layers": "first"}]})");
  EXPECT_TRUE(contains(e, "overrides[0]")) << e;
  e = err(R"({"weight": ["twn"], "overrides": [{"layers": "first", "wieght": ["fixed:8"]}]})");
  EXPECT_TRUE(contains(e, "overrides[0].wieght")) << e;
  e = error_of([] { SearchSpace::load(write_file("broken.json", "{\"weight\": [\"twn\",]}")); });
  EXPECT_TRUE(contains(e, "broken.json")) << e;
}

TEST(SearchSpace, OverridesResolveByFirstLastNameAndGlob) {
  auto s = SearchSpace::from_json(json::parse(R"({
    "weight": ["twn", "fixed:4"], "act": ["fixed:{4,8}"],
    "overrides": [{"layers": ["first", "last"], "weight": ["fixed:8"], "act": ["fixed:8"]},
                  {"layers": "fc*", "act": ["fp32"]},
                  {"layers": "b.conv", "weight": ["binary"]}]})"));
  std::vector<std::string> names = {"conv1", "b.conv", "fc1", "fc2"};
  auto r = s.resolve(names);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].weight.size(), 1u);
  EXPECT_EQ(r[0].act[0].to_string(), "fixed:8");
  EXPECT_EQ(r[1].weight[0].to_string(), "binary:1");
  EXPECT_EQ(r[1].act.size(), 2u);
  EXPECT_TRUE(r[2].act[0].is_fp());
  EXPECT_EQ(r[2].weight.size(), 2u);
  EXPECT_EQ(r[3].weight[0].to_string(), "fixed:8");  // "last" ...
  EXPECT_TRUE(r[3].act[0].is_fp());                  // ... then "fc*" (later overrides win)
  auto bad = SearchSpace::from_json(json::parse(R"({"weight": ["twn"], "overrides": [{"layers": "fc9", "weight": ["fixed:8"]}]})"), "x.json");
  std::string e = error_of([&] { bad.resolve(names); });
  EXPECT_TRUE(contains(e, "overrides[0].layers") && contains(e, "fc9") && contains(e, "conv1")) << e;
}

TEST(SearchSpace, ShippedSpacesLoad) {
  for (const char* f : {"default.json", "bits_only.json", "shared.json", "lowbit.json", "wa.json"}) {
    std::string path = std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/" + f;
    SearchSpace s;
    ASSERT_NO_THROW(s = SearchSpace::load(path)) << path;
    EXPECT_FALSE(s.base.weight.empty());
  }
  auto def = SearchSpace::load(std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/default.json");
  std::set<std::string> schemes;
  for (const auto& w : def.base.weight) schemes.insert(w.scheme);
  for (const auto& t : quant::scheme_table()) {
    if (t.weight_ok) {
      EXPECT_TRUE(schemes.count(t.name)) << "default.json lacks weight scheme " << t.name;
    }
  }
}

TEST(SearchSpace, ActCandidatesByInputSign) {
  auto space = SearchSpace::from_json(json::parse(R"({"weight": ["fixed:4"], "act_by_input_sign": true,
       "act": ["pact:{2,4}", "uniform:{2,4}", "uniform:4:asym", "fp32"],
       "overrides": [{"layers": "fc3", "act": ["pact:4"]}]})"));
  const std::vector<std::string> names = {"conv1", "conv2", "fc1", "fc2", "fc3"};
  std::string m = error_of([&] { space.resolve(names); });
  EXPECT_TRUE(contains(m, "needs the layers' input signs")) << m;
  // measured on LeNet-5: the image is signed, every later input follows a ReLU
  auto model = make_model("lenet5", kCfg);
  torch::manual_seed(2);
  TensorDataset data{torch::randn({256, 1, 28, 28}), torch::zeros({256}, torch::kLong)};
  measure_input_signs(space, *model, data, 1);
  EXPECT_FALSE(space.input_one_sided.at("conv1"));
  EXPECT_TRUE(space.input_one_sided.at("fc2"));
  auto sets = space.resolve(names);
  auto acts = [](const CandidateSet& c) {
    std::string s;
    for (const auto& a : c.act) s += a.to_string() + " ";
    return s;
  };
  EXPECT_EQ(acts(sets[0]), "uniform:2 uniform:4 uniform:4:asym fp32 ");  // signed input: no PACT
  EXPECT_EQ(acts(sets[1]), "pact:2 pact:4 uniform:4:asym fp32 ");        // after a ReLU: no symmetric uniform
  EXPECT_EQ(acts(sets[4]), "pact:4 ");                                   // what an override lists stays
  // the signs travel in the space's JSON (states, provenance) and resolve the same without data
  auto back = SearchSpace::from_json(space.raw);
  EXPECT_EQ(acts(back.resolve(names)[1]), acts(sets[1]));
  // a layer whose filter would leave no quantized act keeps its list
  space.set_input_signs({{"conv1", true}, {"conv2", true}, {"fc1", true}, {"fc2", true}, {"fc3", false}});
  EXPECT_EQ(acts(space.resolve(names)[4]), "pact:4 ");
  // signs of another model's layers are refused, naming the missing layer
  space.set_input_signs({{"features.0", true}});
  std::string foreign = error_of([&] { space.resolve(names); });
  EXPECT_TRUE(contains(foreign, "no entry for layer 'conv1'")) << foreign;
  EXPECT_THROW(SearchSpace::from_json(json::parse(R"({"weight": ["binary"], "act_by_input_sign": "yes"})")),
               std::invalid_argument);
  EXPECT_THROW(SearchSpace::from_json(json::parse(R"({"weight": ["binary"], "input_one_sided": {"conv1": 1}})")),
               std::invalid_argument);
}

// ================================================================= mixed quantizer
TEST(MixedQuantizer, SoftMixesQuantizedWeightsAndGradientsReachTheMix) {
  torch::manual_seed(1);
  auto sample = std::make_shared<ArchSample>();
  auto mq = MixedQuantizer::make(Role::Weight, {QuantSpec::parse("fixed:2"), QuantSpec::parse("fixed:4"),
                                                QuantSpec::parse("fp32")},
                                 sample);
  auto w = torch::randn({8, 4, 3, 3});
  auto q2 = quant::make_quantizer("fixed:2", Role::Weight)->forward(w);
  auto q4 = quant::make_quantizer("fixed:4", Role::Weight)->forward(w);
  auto mix = torch::tensor({0.2f, 0.5f, 0.3f}).requires_grad_(true);
  sample->mode = ArchSample::Mode::Soft;
  sample->w_mix = mix;
  auto out = mq->forward(w);
  EXPECT_EQ(mq->evaluated_last, 3);
  EXPECT_TRUE(torch::allclose(out, 0.2 * q2 + 0.5 * q4 + 0.3 * w, 1e-5, 1e-6));
  auto g = torch::randn_like(w);
  (out * g).sum().backward();
  auto expect = torch::stack({(q2 * g).sum(), (q4 * g).sum(), (w * g).sum()});
  EXPECT_TRUE(torch::allclose(mix.grad(), expect, 1e-4, 1e-4));
}

TEST(MixedQuantizer, HardAndFixedEvaluateOnlyWhatIsNeeded) {
  torch::manual_seed(2);
  auto sample = std::make_shared<ArchSample>();
  auto wq = MixedQuantizer::make(Role::Weight, {QuantSpec::parse("fixed:2"), QuantSpec::parse("fixed:4")}, sample);
  auto aq = MixedQuantizer::make(Role::Activation, {QuantSpec::parse("fixed:4"), QuantSpec::parse("fixed:8")}, sample);
  auto w = torch::randn({6, 5});
  auto x = torch::randn({3, 5});
  auto q4w = quant::make_quantizer("fixed:4", Role::Weight)->forward(w);
  // Fixed
  sample->mode = ArchSample::Mode::Fixed;
  sample->w_index = 1;
  EXPECT_TRUE(torch::equal(wq->forward(w), q4w));
  EXPECT_EQ(wq->evaluated_last, 1);
  // Hard, weight phase (no architecture gradient): the sampled candidate only.
  sample->mode = ArchSample::Mode::Hard;
  sample->w_mix = torch::tensor({0.f, 1.f});
  sample->a_mix = torch::tensor({1.f, 0.f});
  sample->a_index = 0;
  EXPECT_TRUE(torch::equal(wq->forward(w), q4w));
  EXPECT_EQ(wq->evaluated_last, 1);
  aq->forward(x);
  EXPECT_EQ(aq->evaluated_last, 1);
  // Hard, architecture phase: weights evaluate every candidate (exact ST), value exactly the sample.
  auto y = torch::softmax(torch::tensor({0.3f, -0.2f}).requires_grad_(true), 0);
  sample->w_mix = torch::tensor({0.f, 1.f}) + (y - y.detach());
  sample->a_mix = torch::tensor({1.f, 0.f}) + (y - y.detach());
  EXPECT_TRUE(torch::equal(wq->forward(w), q4w));
  EXPECT_EQ(wq->evaluated_last, 2);
  auto ref_a = quant::make_quantizer("fixed:4", Role::Activation);
  ref_a->train();
  auto xa = aq->forward(x);
  EXPECT_EQ(aq->evaluated_last, 1);  // cheap act path
  EXPECT_TRUE(torch::equal(xa, ref_a->forward(x)));
  sample->all_act_paths = true;
  aq->forward(x);
  EXPECT_EQ(aq->evaluated_last, 2);
}

// ================================================================= supernet
TEST(Supernet, ExactCostsMatchThePolicyAccounting) {
  auto space = SearchSpace::from_json(json::parse(R"({"weight": ["binary", "twn", "fixed:{3,8}", "fp32"],
       "act": ["fixed:{4,8}", "fp32"], "overrides": [{"layers": "first", "weight": ["fixed:8"]}]})"));
  Supernet net(make_model("lenet5", kCfg), space);
  ASSERT_EQ(net.layers().size(), 5u);
  EXPECT_EQ(net.groups().size(), 5u);
  EXPECT_EQ(net.groups()[0].size(), 3);   // first layer: fixed:8 x 3 acts
  EXPECT_EQ(net.groups()[1].size(), 15);  // 5 weights x 3 acts
  auto problem = net.choice_problem();
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int64_t> choice;
    for (const auto& g : problem.groups) choice.push_back(std::uniform_int_distribution<int64_t>(0, g.labels.size() - 1)(rng));
    Cost c = total_cost(problem, choice);
    auto fresh = make_model("lenet5", kCfg);
    Policy p = blank_policy(*fresh);
    auto specs = net.layer_specs(choice);
    for (size_t i = 0; i < specs.size(); ++i) {
      LayerPolicy* lp = p.find(net.layers()[i].name);
      ASSERT_NE(lp, nullptr);
      lp->weight = specs[i].first;
      lp->act = specs[i].second;
    }
    update_totals(p);
    EXPECT_EQ(c.weight_bytes, static_cast<double>(p.totals.weight_bytes));
    EXPECT_EQ(c.act_bytes, static_cast<double>(p.totals.act_bytes));
    EXPECT_NEAR(c.bops, p.totals.bops, 1e-6 * p.totals.bops);
  }
  // E[cost] at theta = 0 is the mean cost, differentiable w.r.t. theta.
  auto e = net.expected_cost();
  double mean_w = 0;
  for (const auto& g : problem.groups) {
    double s = 0;
    for (const auto& c : g.cost) s += c.weight_bytes;
    mean_w += s / g.cost.size();
  }
  EXPECT_NEAR(e.weight_bytes.item<double>(), mean_w, 1e-6 * mean_w);
  e.weight_bytes.backward();
  EXPECT_TRUE(net.arch_parameters()[0].grad().defined());
  // The model still calls one conv per layer: forward works in every sampling mode.
  auto x = torch::randn({2, 1, 28, 28});
  net.sample(SamplingMode::Soft, 1.0, true, 1);
  EXPECT_EQ(net.forward(x).sizes(), (std::vector<int64_t>{2, 10}));
  net.sample(SamplingMode::Hard, 1.0, true, 1);
  EXPECT_EQ(net.forward(x).sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(Supernet, SharedGranularityHasOneGroupAndSamplingIsRepeatable) {
  auto space = SearchSpace::from_json(json::parse(R"({"weight": ["twn", "fixed:{2,4}"], "granularity": "shared",
       "overrides": [{"layers": ["first", "last"], "weight": ["fixed:8"]}]})"));
  Supernet net(make_model("lenet5", kCfg), space);
  ASSERT_EQ(net.groups().size(), 2u);  // "shared" + the two overridden layers (one candidate, not searched)
  EXPECT_EQ(net.groups()[0].name, "shared[conv1]");
  EXPECT_EQ(net.groups()[1].name, "shared");
  EXPECT_EQ(net.groups()[1].layers.size(), 3u);
  EXPECT_EQ(net.arch_parameters().size(), 1u);
  EXPECT_TRUE(torch::equal(gumbel_noise(5, 9, 1), gumbel_noise(5, 9, 1)));
  EXPECT_FALSE(torch::equal(gumbel_noise(5, 9, 1), gumbel_noise(5, 10, 1)));
}

TEST(Supernet, FactoredLogitsAreAnOuterSumAndJointIsTheDefault) {
  auto space = SearchSpace::from_json(json::parse(R"({"weight": ["binary", "twn", "fixed:{3,8}"],
       "act": ["fixed:{4,8}", "pact:4"], "overrides": [{"layers": "first", "act": ["fp32"]}]})"));
  Supernet joint(make_model("lenet5", kCfg), space);
  EXPECT_EQ(joint.arch_parameters().size(), 5u);  // one joint vector per searched layer
  EXPECT_EQ(joint.arch_parameters()[1].numel(), 12);
  Supernet fac(make_model("lenet5", kCfg), space, ArchLogits::Factored);
  // first layer: one act candidate -> the joint form (4 logits); the others: 4 weight + 3 act logits
  ASSERT_EQ(fac.arch_parameters().size(), 9u);
  EXPECT_EQ(fac.arch_parameters()[0].numel(), 4);
  EXPECT_EQ(fac.arch_parameters()[1].numel(), 4);
  EXPECT_EQ(fac.arch_parameters()[2].numel(), 3);
  EXPECT_TRUE(fac.groups()[1].factored());
  EXPECT_FALSE(fac.groups()[0].factored());
  // An additive joint prior is represented exactly; pi = pi_w (x) pi_a.
  auto tw = torch::tensor({0.5, -1.0, 2.0, 0.0}, torch::kFloat64), ta = torch::tensor({1.0, -0.5, 0.25}, torch::kFloat64);
  fac.set_logits(1, (tw.unsqueeze(1) + ta.unsqueeze(0)).reshape({-1}));
  auto pi = fac.probabilities(1);
  auto outer = (torch::softmax(tw, 0).unsqueeze(1) * torch::softmax(ta, 0).unsqueeze(0)).reshape({-1});
  EXPECT_TRUE(torch::allclose(pi, outer, 1e-6, 1e-6));
  // differences of the joint logits are kept: index 5 = (weight 1, act 2), index 0 = (weight 0, act 0)
  EXPECT_NEAR(fac.groups()[1].logits()[5].item<double>() - fac.groups()[1].logits()[0].item<double>(),
              (-1.0 + 0.25) - (0.5 + 1.0), 1e-5);
  // E[cost] is differentiable w.r.t. both factors, and sampling reads the factored logits.
  auto e = fac.expected_cost();
  e.bops.backward();
  EXPECT_GT(fac.arch_parameters()[1].grad().abs().sum().item<double>(), 0);
  EXPECT_GT(fac.arch_parameters()[2].grad().abs().sum().item<double>(), 0);
  fac.sample(SamplingMode::Hard, 1.0, true, 7);
  EXPECT_EQ(fac.forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(parse_arch_logits("factored"), ArchLogits::Factored);
  EXPECT_THROW(parse_arch_logits("outer"), std::invalid_argument);
  // QSS options: joint logits and every act path by default; old states keep what they said.
  QssOptions d;
  EXPECT_EQ(d.arch_logits, ArchLogits::Joint);
  EXPECT_TRUE(d.all_act_paths);
  auto back = QssOptions::from_json(json::parse(R"({"all_act_paths": false, "arch_logits": "factored"})"));
  EXPECT_FALSE(back.all_act_paths);
  EXPECT_EQ(back.arch_logits, ArchLogits::Factored);
  EXPECT_EQ(QssOptions::from_json(back.to_json()).arch_logits, ArchLogits::Factored);
  EXPECT_THROW(QssOptions::from_json(json::parse(R"({"arch_logits": 3})")), std::invalid_argument);
}

// ================================================================= derivation
namespace {
ChoiceProblem random_problem(std::mt19937& rng, int groups, int options) {
  ChoiceProblem p;
  p.num_weights = 1000;
  std::uniform_real_distribution<double> u(0, 1);
  for (int g = 0; g < groups; ++g) {
    ChoiceGroup cg;
    cg.name = "g" + std::to_string(g);
    double sum = 0;
    for (int o = 0; o < options; ++o) {
      cg.labels.push_back("o" + std::to_string(o));
      double pr = std::exp(3 * u(rng));
      cg.prob.push_back(pr);
      sum += pr;
      cg.cost.push_back({std::floor(10 + 990 * u(rng)), std::floor(100 + 900 * u(rng)), std::floor(1e4 * u(rng))});
    }
    for (auto& pr : cg.prob) pr /= sum;
    p.groups.push_back(cg);
  }
  return p;
}
}  // namespace

TEST(Constraints, DerivedPolicyMeetsEveryFeasibleBudget) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 30; ++trial) {
    ChoiceProblem p = random_problem(rng, 2 + trial % 7, 2 + trial % 5);
    Cost lo = minimum_cost(p), hi = maximum_cost(p);
    for (double f : {0.0, 0.01, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5}) {
      Budgets b;
      b.set(CostKind::WeightBytes, lo.weight_bytes + f * (hi.weight_bytes - lo.weight_bytes), "test");
      Derivation d = derive(p, b);
      EXPECT_LE(d.cost.weight_bytes, b.limit(CostKind::WeightBytes)) << trial << " " << f;
      EXPECT_EQ(total_cost(p, d.choice).weight_bytes, d.cost.weight_bytes);
      if (d.argmax_cost.weight_bytes <= b.limit(CostKind::WeightBytes)) {
        // no repair, no refill; the budget fill may only add cost (every kind at least as much)
        EXPECT_EQ(d.downgrades + d.upgrades, 0);
        if (d.fills == 0) EXPECT_EQ(d.choice, d.argmax);
        for (size_t g = 0; g < p.groups.size(); ++g)
          for (const auto& k : cost_kinds())
            EXPECT_GE(p.groups[g].cost[d.choice[g]].at(k.kind), p.groups[g].cost[d.argmax[g]].at(k.kind));
      }
      if (f == 0.0) {
        EXPECT_EQ(d.cost.weight_bytes, lo.weight_bytes);
      }
      // with an act footprint and BOPs budget too (act: the loosest feasible value + some slack)
      b.set(CostKind::ActBytes, lo.act_bytes + 0.5 * (hi.act_bytes - lo.act_bytes));
      b.set(CostKind::Bops, lo.bops + 0.7 * (hi.bops - lo.bops));
      try {
        Derivation d2 = derive(p, b);
        EXPECT_TRUE(within(d2.cost, b));
      } catch (const InfeasibleBudget&) {
        // jointly infeasible combinations may exist; they must be reported, never violated
      }
    }
  }
}

TEST(Constraints, RepairDowngradesWhereLeastProbabilityPerByteIsLost) {
  ChoiceProblem p;
  p.num_weights = 100;
  // group a: confident (0.9 on the big option); group b: undecided (0.5 / 0.5). Saving 100 bytes in either.
  p.groups.push_back({"a", {"a"}, {"big", "small"}, {0.9, 0.1}, {{200, 0, 0}, {100, 0, 0}}});
  p.groups.push_back({"b", {"b"}, {"big", "small"}, {0.51, 0.49}, {{200, 0, 0}, {100, 0, 0}}});
  Budgets b;
  b.set(CostKind::WeightBytes, 300, "test");
  Derivation d = derive(p, b);
  EXPECT_EQ(d.argmax, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(d.choice, (std::vector<int64_t>{0, 1}));  // b loses 0.02 per 100 bytes, a would lose 0.8
  EXPECT_EQ(d.downgrades, 1);
  EXPECT_FALSE(d.uniform);
  b.set(CostKind::WeightBytes, 200, "test");
  d = derive(p, b);
  EXPECT_EQ(d.choice, (std::vector<int64_t>{1, 1}));
  EXPECT_TRUE(d.uniform);  // both searched groups on the same option: degenerate
}

TEST(Constraints, InfeasibleBudgetStatesTheMinimum) {
  ChoiceProblem p = tiny_problem();
  Cost lo = minimum_cost(p);
  Budgets b = make_budgets(std::nullopt, 0.5, 0, 0, p.num_weights);
  try {
    check_feasible(p, b);
    FAIL() << "no error";
  } catch (const InfeasibleBudget& e) {
    EXPECT_EQ(e.minimum.weight_bytes, lo.weight_bytes);
    std::string m = e.what();
    EXPECT_TRUE(contains(m, "minimum feasible budget is --budget-kib") && contains(m, "--avg-bits")) << m;
    // the stated minimum works
    double kib = std::stod(m.substr(m.find("--budget-kib ") + 13));
    EXPECT_NO_THROW(derive(p, make_budgets(kib, std::nullopt, 0, 0, p.num_weights)));
  }
  Budgets ok = make_budgets(lo.weight_bytes / 1024.0, std::nullopt, 0, 0, p.num_weights);
  EXPECT_LE(derive(p, ok).cost.weight_bytes, ok.limit(CostKind::WeightBytes));
  EXPECT_THROW(make_budgets(1.0, 2.0, 0, 0, 10), std::invalid_argument);
  EXPECT_THROW(make_budgets(std::nullopt, std::nullopt, 0, 0, 10), std::invalid_argument);
  EXPECT_THROW(make_budgets(-1.0, std::nullopt, 0, 0, 10), std::invalid_argument);
  EXPECT_THROW(check_feasible(p, make_budgets(1000.0, std::nullopt, 0.001, 0, 10)), InfeasibleBudget);
}

TEST(Constraints, WaBitsIsTheBopsOfUniformWeightsAndActivations) {
  EXPECT_EQ(parse_wa_bits("4,4"), 16.0);
  EXPECT_EQ(parse_wa_bits("2,8"), 16.0);
  for (const char* bad : {"4", "4,4,4", "0,4", "4,40", "x,4", ""})
    EXPECT_TRUE(contains(error_of([&] { parse_wa_bits(bad); }), "--wa-bits")) << bad;
  const int64_t macs = 123456;
  Budgets b = make_budgets({{"--avg-bits", 2}, {"--wa-bits", parse_wa_bits("3,3")}}, 1000, macs);
  EXPECT_EQ(b.limit(CostKind::Bops), 9.0 * macs);
  EXPECT_EQ(b.limit(CostKind::WeightBytes), 250.0);
  EXPECT_TRUE(contains(b.describe(1000), "--wa-bits (W x A = 9)")) << b.describe(1000);
  EXPECT_TRUE(contains(error_of([&] { make_budgets({{"--avg-bits", 2}, {"--wa-bits", 9}, {"--bops", 1e6}}, 1000, macs); }),
                       "give either --bops or --wa-bits"));
  EXPECT_TRUE(contains(error_of([&] { make_budgets({{"--avg-bits", 2}, {"--wa-bits", 9}}, 1000, 0); }), "MACs"));
}

TEST(Constraints, PenaltyAndMultiplierRule) {
  Budgets b;
  b.set(CostKind::WeightBytes, 100);
  b.set(CostKind::ActBytes, 50);
  ExpectedCost e;
  e.weight_bytes = torch::tensor(120.0, torch::kFloat64);
  e.act_bytes = torch::tensor({40.0, 60.0}, torch::kFloat64);
  e.bops = torch::tensor(0.0, torch::kFloat64);
  const Budgets b0 = b;  // every multiplier at 1
  auto lambda = [](const Budgets& x, CostKind k) { return x.find(k)->multiplier; };
  EXPECT_NEAR(cost_penalty(e, b).item<double>(), 0.04 + 0.04, 1e-12);
  PenaltyOptions o;
  adapt_multipliers(b, e.values(), o);
  EXPECT_GT(lambda(b, CostKind::WeightBytes), 1.0);  // 20 % over: grows
  EXPECT_GT(lambda(b, CostKind::ActBytes), 1.0);
  Budgets l2 = b0;
  adapt_multipliers(l2, Cost{100.5, 10, 0}, o);
  EXPECT_LT(lambda(l2, CostKind::WeightBytes), 1.0);  // inside the tolerance band: decays
  EXPECT_LT(lambda(l2, CostKind::ActBytes), 1.0);
  Budgets l3 = b0;
  adapt_multipliers(l3, Cost{60, 10, 0}, o);
  EXPECT_GT(lambda(l3, CostKind::WeightBytes), 1.0);  // far below the budget: pulled up as well (the budget is a target)
}

// ================================================================= the search
TEST(Search, TightBudgetIsMetAndDrivesExpectedSizeToIt) {
  ChoiceProblem p = tiny_problem();
  Cost lo = minimum_cost(p);
  double mean = 0;
  for (const auto& g : p.groups) {
    double s = 0;
    for (const auto& c : g.cost) s += c.weight_bytes;
    mean += s / g.cost.size();
  }
  SearchOptions o = tiny_options("tight");
  const double budget = lo.weight_bytes + 0.3 * (mean - lo.weight_bytes);  // well below E[size] at the start
  o.budgets = {{"--budget-kib", budget / 1024.0}};
  o.epochs = 6;
  o.log = tmp_dir() + "/tight.csv";
  SearchResult r = run_search(o);
  EXPECT_LE(r.policy.totals.weight_bytes, budget);
  EXPECT_LT(std::abs(r.expected.weight_bytes - budget) / budget, 0.05)
      << "E[size] " << r.expected.weight_bytes << " vs budget " << budget;
  // the written policy is a valid policy for the model, with provenance
  Policy back = load_policy(o.out);
  auto m = make_model("lenet5", kCfg);
  EXPECT_NO_THROW(check_policy(back, *m));
  EXPECT_EQ(back.search["method"], "qss");
  EXPECT_EQ(back.search["seed"], 7);
  EXPECT_TRUE(back.search["probabilities"].contains("fc1"));
  EXPECT_EQ(back.search["version"], AUTOQNN_VERSION);
  // CSV: header + one row per (epoch, layer, candidate)
  std::ifstream csv(o.log);
  std::string line;
  int rows = 0;
  std::getline(csv, line);
  EXPECT_TRUE(contains(line, "epoch,phase,tau") && contains(line, "layer,weight,act,prob")) << line;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 7 * 5 * 6);  // 7 epochs x 5 layers x 6 candidates
}

TEST(Search, SameSeedSamePolicyAndResumeEqualsUninterrupted) {
  SearchOptions a = tiny_options("det_a");
  a.budgets = {{"--avg-bits", 2.5}};
  SearchResult ra = run_search(a);
  SearchOptions b = tiny_options("det_b");
  b.budgets = {{"--avg-bits", 2.5}};
  SearchResult rb = run_search(b);
  EXPECT_EQ(layers_of(ra.policy), layers_of(rb.policy));
  EXPECT_EQ(ra.policy.search["probabilities"], rb.policy.search["probabilities"]);

  // interrupted after epoch 2 (a simulated kill right after the state was saved), then --resume
  SearchOptions c = tiny_options("det_c");
  c.budgets = {{"--avg-bits", 2.5}};
  c.stop_after_epoch = 2;
  SearchResult rc1 = run_search(c);
  EXPECT_TRUE(rc1.stopped);
  EXPECT_FALSE(fs::exists(c.out));
  c.stop_after_epoch = 0;
  c.resume = true;
  SearchResult rc2 = run_search(c);
  EXPECT_EQ(layers_of(ra.policy), layers_of(rc2.policy));
  EXPECT_EQ(ra.policy.search["probabilities"], rc2.policy.search["probabilities"]);
  EXPECT_EQ(ra.expected.weight_bytes, rc2.expected.weight_bytes);

  // --resume with other settings is refused, naming them
  SearchOptions d = c;
  d.seed = 8;
  std::string e = error_of([&] { run_search(d); });
  EXPECT_TRUE(contains(e, "seed")) << e;

  // --from-state: another budget in (well under) a second, met exactly
  ChoiceProblem p = tiny_problem();
  Cost lo = minimum_cost(p), hi = maximum_cost(p);
  for (double f : {0.0, 0.05, 0.2, 0.6, 1.2}) {
    RederiveOptions ro;
    ro.state = a.state;
    ro.budgets = {{"--budget-kib", (lo.weight_bytes + f * (hi.weight_bytes - lo.weight_bytes)) / 1024.0}};
    ro.out = tmp_dir() + "/rederived.json";
    auto t0 = std::chrono::steady_clock::now();
    SearchResult rr = rederive_from_state(ro);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(secs, 5.0);
    EXPECT_LE(static_cast<double>(rr.policy.totals.weight_bytes), ro.budgets.at("--budget-kib") * 1024.0) << f;
    EXPECT_EQ(load_policy(ro.out).search["rederived_from_state"], a.state);
  }
  RederiveOptions same;
  same.state = a.state;
  same.budgets = {{"--avg-bits", 2.5}};
  same.out = tmp_dir() + "/rederived_same.json";
  EXPECT_EQ(layers_of(rederive_from_state(same).policy), layers_of(ra.policy));
  RederiveOptions tiny;
  tiny.state = a.state;
  tiny.budgets = {{"--avg-bits", 0.1}};
  tiny.out = tmp_dir() + "/never.json";
  EXPECT_THROW(rederive_from_state(tiny), InfeasibleBudget);
  EXPECT_FALSE(fs::exists(tiny.out));
}

TEST(Search, InfeasibleBudgetFailsBeforeTraining) {
  SearchOptions o = tiny_options("infeasible");
  o.budgets = {{"--avg-bits", 0.5}};  // below binary everywhere (1 bit + scales)
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { run_search(o); });
  EXPECT_TRUE(contains(e, "minimum feasible budget")) << e;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_FALSE(fs::exists(o.out));
  EXPECT_FALSE(fs::exists(o.state));
}

// A learning rate that blows the weights up: a clear "diverged" error, whichever of the loss or the weights
// turns non-finite first, and no policy written.
TEST(Search, DivergenceIsReportedAsSuchAndWritesNothing) {
  SearchOptions o = tiny_options("diverge");
  o.budgets = {{"--avg-bits", 3.0}};
  o.lr = 1e12;
  std::string e = error_of([&] { run_search(o); });
  EXPECT_TRUE(contains(e, "search diverged") && contains(e, "--lr")) << e;
  EXPECT_FALSE(fs::exists(o.out));
}

TEST(Search, SoftSamplingAndSharedGranularityRun) {
  SearchOptions o = tiny_options("soft");
  o.epochs = 1;
  o.warmup = 0;
  o.budgets = {{"--avg-bits", 3}};
  auto soft = std::make_shared<QssOptions>();
  soft->sampling = SamplingMode::Soft;
  o.strategy = soft;
  o.space_path = write_file("shared_acts.json", R"({"granularity": "shared",
      "weight": ["twn", "fixed:{2,4}"], "act": ["fixed:{4,8}"],
      "overrides": [{"layers": ["first", "last"], "weight": ["fixed:8"], "act": ["fixed:8"]}]})");
  o.budgets["--act-budget-kib"] = 0.8;  // 819 bytes: the 1176-element input of conv2 must take 4-bit activations
  o.budgets["--bops"] = 10e6;  // binding: the shared layers need weight bits x act bits <= 8 (min 9.94e6)
  SearchResult r = run_search(o);
  EXPECT_LE(static_cast<double>(r.policy.totals.weight_bytes), 3.0 * r.policy.totals.params / 8.0);
  EXPECT_LE(static_cast<double>(r.policy.totals.act_bytes), 0.8 * 1024);
  EXPECT_LE(r.policy.totals.bops, 10e6);
  EXPECT_EQ(r.policy.layers[1].act.to_string(), "fixed:4");
  // shared: every searched layer carries the same choice
  EXPECT_EQ(r.policy.layers[1].weight, r.policy.layers[2].weight);
  EXPECT_EQ(r.policy.layers[2].weight, r.policy.layers[3].weight);
  EXPECT_EQ(r.policy.layers[0].weight.to_string(), "fixed:8");
}

// ================================================================= CLI
using autoqnn_test::CliResult;
using autoqnn_test::run_cli;

TEST(SearchCli, UsageErrorsInfeasibleBudgetAndARun) {
  auto h = run_cli("search --help");
  EXPECT_EQ(h.rc, 0);
  EXPECT_TRUE(contains(h.out, "--budget-kib") && contains(h.out, "--from-state")) << h.out;
  const std::string common = "search --dataset synthetic --train-limit 300 --batch-size 50 --threads 2 "
                           "--checkpoint " + fp32_checkpoint() + " --space " + tiny_space();
  const std::string base = common + " --model lenet5";
  auto r = run_cli(base + " --out " + tmp_dir() + "/cli.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "--budget-kib")) << r.out;
  r = run_cli(base + " --avg-bits 2 --budget-kib 3 --out " + tmp_dir() + "/cli.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  // bad values of QSS's choice flags: usage errors naming the value
  for (const auto& [flag, says] : std::vector<std::pair<std::string, std::string>>{
           {"--sampling fuzzy", "fuzzy"},
           {"--act-paths some", "--act-paths must be all or sampled, got 'some'"},
           {"--arch-logits outer", "unknown arch logits 'outer'"}}) {
    r = run_cli(base + " --avg-bits 2 " + flag + " --out " + tmp_dir() + "/cli.json");
    EXPECT_EQ(r.rc, 2) << flag << ": " << r.out;
    EXPECT_TRUE(contains(r.out, says)) << flag << ": " << r.out;
  }
  r = run_cli(base + " --avg-bits 0.2 --out " + tmp_dir() + "/cli.json");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "minimum feasible budget is --budget-kib")) << r.out;
  r = run_cli(common + " --avg-bits 2 --model resnet8 --out " + tmp_dir() + "/cli.json");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "lenet5")) << r.out;
  EXPECT_FALSE(fs::exists(tmp_dir() + "/cli.json"));

  std::string out = tmp_dir() + "/cli.json", state = tmp_dir() + "/cli.state.pt", log = tmp_dir() + "/cli.csv";
  r = run_cli(base + " --avg-bits 2.5 --epochs 1 --warmup 1 --seed 3 --out " + out + " --state " + state +
              " --log " + log);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "search 2/2")) << r.out;
  Policy p = load_policy(out);
  EXPECT_LE(p.totals.avg_weight_bits, 2.5);
  EXPECT_TRUE(contains(p.search["command"].get<std::string>(), "--avg-bits 2.5"));
  EXPECT_TRUE(fs::exists(log));
  r = run_cli("search --from-state " + state + " --avg-bits 1.6 --out " + tmp_dir() + "/cli_re.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_LE(load_policy(tmp_dir() + "/cli_re.json").totals.avg_weight_bits, 1.6);
  r = run_cli("search --from-state " + out + " --avg-bits 2 --out " + tmp_dir() + "/cli_bad.json");
  EXPECT_NE(r.rc, 0) << r.out;

  // --init-from-sensitivity: with no search epoch the policy is the prior's argmax, i.e. per layer the
  // candidate with the highest SQNR in the analyze table (a --no-accuracy table)
  const std::string sens = tmp_dir() + "/sens.csv";
  r = run_cli("analyze --model lenet5 --dataset synthetic --train-limit 300 --threads 2 --no-accuracy --checkpoint " +
              fp32_checkpoint() + " --space " + tiny_space() + " --out " + sens);
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run_cli(base + " --budget-kib 1000 --epochs 0 --warmup 0 --init-from-sensitivity " + sens + " --out " +
              tmp_dir() + "/prior.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  Policy pp = load_policy(tmp_dir() + "/prior.json");
  auto rows = ptq::parse_sensitivity_csv(read_text_file(sens), sens);
  for (const auto& l : pp.layers) {
    double best = -1e300;
    std::string best_w;
    for (const auto& row : rows)
      if (row.layer == l.name && row.sqnr_db > best) best = row.sqnr_db, best_w = row.weight;
    EXPECT_EQ(l.weight.to_string(), best_w) << l.name;
  }
  r = run_cli(common + " --model lenet5 --method qpl --qpl-scheme vecq:4 --avg-bits 2 --init-from-sensitivity " + sens +
              " --out " + tmp_dir() + "/bad.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "--init-from-sensitivity")) << r.out;

  // --wa-bits 4,4 = the BOPs of uniform W4A4 (every method; here QSS's derivation with no epoch)
  r = run_cli("policy uniform --model lenet5 --weight fixed:4 --act uniform:4 --out " + tmp_dir() + "/w4a4.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const double w4a4 = load_policy(tmp_dir() + "/w4a4.json").totals.bops;
  const std::string wa = "search --dataset synthetic --train-limit 300 --batch-size 50 --threads 2 --model lenet5 "
                         "--checkpoint " + fp32_checkpoint() + " --space wa --avg-bits 8 --epochs 0 --warmup 0";
  r = run_cli(wa + " --wa-bits 4,4 --out " + tmp_dir() + "/wa.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  Policy pw = load_policy(tmp_dir() + "/wa.json");
  EXPECT_EQ(pw.search["budget"]["bops"].get<double>(), w4a4);
  EXPECT_LE(pw.totals.bops, w4a4);
  EXPECT_GE(pw.totals.bops, 0.9 * w4a4);  // the fill spends it
  r = run_cli(wa + " --wa-bits 4 --out " + tmp_dir() + "/wa_bad.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "--wa-bits takes W,A")) << r.out;
  r = run_cli(wa + " --wa-bits 4,4 --bops 1e6 --out " + tmp_dir() + "/wa_bad.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_FALSE(fs::exists(tmp_dir() + "/wa_bad.json"));
}
