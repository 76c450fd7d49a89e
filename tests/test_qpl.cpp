// QPL (learned, reparameterised bitwidths): the learned-bit quantizer (gradient w.r.t. b, interpolation,
// consistency with the fixed-bit schemes), continuous costs, rounding + repair under random budgets, the
// search on LeNet-5 / synthetic data (sizes converge to the budget, determinism, resume, --from-state),
// the qss+qpl pipeline and the CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "autoqnn/policy.h"
#include "test_fixtures.h"
#include "test_util.h"
#include "autoqnn/json_schema.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "quantizers/registry.h"
#include "search/constraints.h"
#include "search/learned_bit_quantizer.h"
#include "search/qpl.h"
#include "search/qss_qpl.h"
#include "search/search_driver.h"

namespace fs = std::filesystem;
using namespace autoqnn;
using namespace autoqnn::search;
using nlohmann::json;
using quant::QuantSpec;
using quant::Role;

namespace {

std::string tmp_dir() {
  static std::string d = autoqnn_test::make_tmp_dir("qpl");
  return d;
}

using autoqnn_test::contains;
using autoqnn_test::error_of;

const ModelConfig kCfg = autoqnn_test::kSyntheticCfg;

const std::string& fp32_checkpoint() {
  static std::string path = autoqnn_test::train_synthetic_lenet5(tmp_dir() + "/lenet5_fp32.pt");
  return path;
}

LearnedBitQuantizerPtr make_lbq(const std::string& spec, int lo, int hi, double init) {
  QuantSpec s = quant::validate_spec(QuantSpec::parse(spec), Role::Weight);
  std::vector<int> bits;
  for (int b : quant::valid_bits(s))
    if (b >= lo && b <= hi) bits.push_back(b);
  return std::make_shared<LearnedBitQuantizer>(quant::make_quantizer(s, Role::Weight), bits, init);
}

SearchOptions qpl_options(const std::string& tag) {
  SearchOptions o;
  o.method = "qpl";
  o.model = "lenet5";
  o.checkpoint = fp32_checkpoint();
  // (QPL does not search schemes: the space is only recorded; any valid one will do)
  static const std::string space = [] {
    std::string p = tmp_dir() + "/space.json";
    std::ofstream(p) << R"({"name": "unused", "weight": ["fixed:{2..8}"], "act": ["fp32"]})";
    return p;
  }();
  o.space_path = space;
  o.data.dataset = "synthetic";
  o.data.train_limit = 600;  // train 500 / val 100
  o.batch_size = 50;
  o.epochs = 3;
  o.warmup = 1;
  o.seed = 5;
  o.lr = 0.02;
  o.arch.lr = 0.1;  // the bit learning rate
  o.penalty.eta = 0.2;
  o.calib_batches = 1;
  auto q = std::make_shared<QplOptions>();
  q->weight = "vecq:4";
  q->act = "fp32";
  q->bits_min = 1;
  q->bits_max = 8;
  o.strategy = q;
  o.out = tmp_dir() + "/" + tag + ".json";
  o.state = tmp_dir() + "/" + tag + ".state.pt";
  return o;
}

json layers_of(const Policy& p) { return p.to_json()["layers"]; }

}  // namespace

// ================================================================= the learned-bit quantizer
TEST(QplQuantizer, GradientWrtBitsIsNegativeForTheQuantizationError) {
  torch::manual_seed(3);
  auto w = torch::randn({32, 16, 3, 3});
  for (const char* spec : {"vecq:2", "fixed:4", "mul2q:2", "uniform:4"}) {
    // f <= 1/2 on every segment: there d err / d b = 2 <e_hi - e_lo, e_lo + f (e_hi - e_lo)>, which at f = 1/2 is
    // exactly ||e_hi||^2 - ||e_lo||^2 (negative iff the finer quantizer is better) and below it is smaller
    for (double b : {1.3, 2.5, 3.2, 4.4, 5.5, 6.1, 7.5}) {
      auto q = make_lbq(spec, 1, 8, b);
      if (b < q->bit_options().front()) continue;
      q->set_continuous(true);
      auto err = (q->forward(w) - w).pow(2).sum();
      err.backward();
      ASSERT_TRUE(q->bit_logit().grad().defined());
      const double g = q->bit_logit().grad().item<double>();
      EXPECT_LT(g, 0.0) << spec << " at b = " << b << ": more bits must lower the quantization error";
      // d err / d b through the reparameterisation: finite difference in b agrees in sign and size
      const double h = 1e-3, bv = q->bits_value();
      torch::NoGradGuard ng;
      q->set_bits(bv + h);
      double up = (q->forward(w) - w).pow(2).sum().item<double>();
      q->set_bits(bv - h);
      double dn = (q->forward(w) - w).pow(2).sum().item<double>();
      double fd_b = (up - dn) / (2 * h);
      double lo = q->bit_options().front(), hi = q->bit_options().back();
      double u = (bv - lo) / (hi - lo);
      double fd_s = fd_b * (hi - lo) * u * (1 - u);  // db/ds = (hi - lo) sigmoid'(s)
      EXPECT_NEAR(g, fd_s, 0.02 * std::abs(fd_s) + 1e-3) << spec << " at b = " << b;
    }
  }
}

TEST(QplQuantizer, InterpolatesTheNeighbouringBitwidthsAndMatchesTheFixedSchemes) {
  torch::manual_seed(4);
  auto w = torch::randn({16, 64});
  auto q = make_lbq("vecq:2", 1, 8, 3.25);
  EXPECT_EQ(q->bit_options(), (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_NEAR(q->bits_value(), 3.25, 1e-5);
  EXPECT_EQ(q->nearest(), 2);  // 3 bits
  torch::NoGradGuard ng;
  auto q3 = quant::make_quantizer("vecq:3", Role::Weight)->forward(w);
  auto q4 = quant::make_quantizer("vecq:4", Role::Weight)->forward(w);
  q->set_continuous(false);
  auto f = static_cast<float>(q->bits_value() - 3.0);
  EXPECT_TRUE(torch::allclose(q->forward(w), (1 - f) * q3 + f * q4, 1e-5, 1e-6));
  q->set_fixed(q->nearest());
  EXPECT_TRUE(torch::equal(q->forward(w), q3));  // the rounded architecture = the policy's quantizer
  // interpolation weights: (1 - f, f) on the segment, exact costs at the options
  auto iw = q->interp_weights(false);
  EXPECT_NEAR(iw[2].item<double>(), 1 - f, 1e-5);
  EXPECT_NEAR(iw[3].item<double>(), f, 1e-5);
  EXPECT_NEAR(iw.sum().item<double>(), 1.0, 1e-12);
  // esb:k=1 is valid from 3 bits: the range is the intersection
  auto e = make_lbq("esb:4:k=1", 1, 6, 4);
  EXPECT_EQ(e->bit_options(), (std::vector<int>{3, 4, 5, 6}));
  // a single valid bitwidth has nothing to learn
  auto t = make_lbq("twn", 1, 8, 2);
  EXPECT_FALSE(t->learned());
  EXPECT_FALSE(t->bit_logit().defined());
}

TEST(QplNet, ContinuousCostsAreExactAtValidBitsAndRiseWithBits) {
  QplOptions o;
  o.weight = "fixed:4";
  o.act = "fixed:8";
  o.bits_min = 2;
  o.bits_max = 8;
  o.layers = {{"conv1", {{"weight", "fixed:8"}, {"act", "fp32"}}}};
  QplNet net(make_model("lenet5", kCfg), o);
  ASSERT_EQ(net.layers().size(), 5u);
  EXPECT_FALSE(net.layers()[0].aq);  // fp32 input of conv1
  EXPECT_TRUE(net.layers()[1].aq);
  // 5 learned weight + 4 learned act bitwidths (conv1's input is fp32)
  EXPECT_EQ(net.bit_parameters().size(), 9u);
  // at exactly representable bits the expected costs equal the policy's accounting
  std::vector<int> wb = {7, 3, 4, 5, 6}, ab = {32, 4, 6, 7, 3};  // inside the ranges (the ends are clamped)
  for (size_t l = 0; l < 5; ++l) {
    net.layers()[l].wq->set_bits(wb[l]);
    if (net.layers()[l].aq) net.layers()[l].aq->set_bits(ab[l]);
  }
  // set_bits keeps b strictly inside the range: use the choice of the rounded bits for the exact cost
  ChoiceProblem p = net.choice_problem(0.5);
  std::vector<int64_t> choice;
  for (const auto& g : p.groups)
    choice.push_back(std::max_element(g.prob.begin(), g.prob.end()) - g.prob.begin());
  Policy pol = blank_policy(*make_model("lenet5", kCfg));
  auto specs = net.layer_specs(choice);
  for (size_t l = 0; l < 5; ++l) {
    pol.layers[l].weight = specs[l].first;
    pol.layers[l].act = specs[l].second;
    EXPECT_EQ(specs[l].first.bits, wb[l]);
  }
  update_totals(pol);
  Cost exact = total_cost(p, choice);
  EXPECT_EQ(static_cast<double>(pol.totals.weight_bytes), exact.weight_bytes);
  EXPECT_EQ(static_cast<double>(pol.totals.act_bytes), exact.act_bytes);
  EXPECT_NEAR(pol.totals.bops, exact.bops, 1e-6 * exact.bops);
  ExpectedCost e = net.expected_cost();
  Cost ev = e.values();
  // b sits at the options up to the float32 rounding of the logits
  EXPECT_NEAR(ev.weight_bytes, exact.weight_bytes, 1e-4 * exact.weight_bytes);
  EXPECT_NEAR(ev.act_bytes, exact.act_bytes, 1e-4 * exact.act_bytes);
  EXPECT_NEAR(ev.bops, exact.bops, 1e-4 * exact.bops);
  // more bits -> more bytes: d Size / d s > 0 for every learned weight quantizer
  e.weight_bytes.backward();
  for (const auto& L : net.layers()) EXPECT_GT(L.wq->bit_logit().grad().item<double>(), 0.0) << L.name;
  // the activation footprint of each layer is differentiable too
  for (auto& t : net.bit_parameters())
    if (t.grad().defined()) t.mutable_grad().zero_();
  net.expected_cost().act_bytes[2].backward();
  EXPECT_GT(net.layers()[2].aq->bit_logit().grad().item<double>(), 0.0);
}

TEST(QplNet, RoundingAndRepairAlwaysMeetTheBudget) {
  QplOptions o;
  o.weight = "vecq:4";
  o.act = "fixed:8";
  QplNet net(make_model("lenet5", kCfg), o);
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> ub(1.0, 8.0), ua(2.0, 8.0), uf(0.0, 1.0);
  int repaired = 0;
  for (int trial = 0; trial < 40; ++trial) {
    for (auto& L : net.layers()) {
      if (L.wq) L.wq->set_bits(ub(rng));
      if (L.aq) L.aq->set_bits(ua(rng));
    }
    ChoiceProblem p = net.choice_problem(0.5);
    // argmax = b rounded to the nearest valid bitwidth
    for (size_t l = 0; l < p.groups.size(); ++l) {
      const auto& g = p.groups[l];
      int64_t am = std::max_element(g.prob.begin(), g.prob.end()) - g.prob.begin();
      const auto& L = net.layers()[l];
      const int64_t na = static_cast<int64_t>(L.abits.size());
      EXPECT_EQ(L.wbits[static_cast<size_t>(am / na)], L.wbits[static_cast<size_t>(L.wq->nearest())]);
    }
    Cost lo = minimum_cost(p);
    Cost hi;
    for (const auto& g : p.groups) {
      double w = 0, a = 0;
      for (const auto& c : g.cost) {
        w = std::max(w, c.weight_bytes);
        a = std::max(a, c.act_bytes);
      }
      hi.weight_bytes += w;
      hi.act_bytes = std::max(hi.act_bytes, a);
    }
    Budgets b;
    b.set(CostKind::WeightBytes, lo.weight_bytes + uf(rng) * (hi.weight_bytes - lo.weight_bytes));
    if (trial % 2) b.set(CostKind::ActBytes, lo.act_bytes + uf(rng) * (hi.act_bytes - lo.act_bytes));
    Derivation d = derive(p, b);
    EXPECT_LE(d.cost.weight_bytes, b.limit(CostKind::WeightBytes)) << trial;
    if (b.has(CostKind::ActBytes)) {
      EXPECT_LE(d.cost.act_bytes, b.limit(CostKind::ActBytes)) << trial;
    }
    if (d.argmax_cost.weight_bytes <= b.limit(CostKind::WeightBytes) &&
        (!b.has(CostKind::ActBytes) || d.argmax_cost.act_bytes <= b.limit(CostKind::ActBytes))) {
      EXPECT_EQ(d.downgrades, 0) << trial;  // the rounded bits already fit: kept
    }  // the rounded bits already fit: kept
    else
      ++repaired;
  }
  EXPECT_GT(repaired, 5);  // the random budgets exercised the repair
}

// ================================================================= the search
TEST(QplSearch, LearnedSizeConvergesToTheBudgetAndThePolicyMeetsIt) {
  SearchOptions o = qpl_options("conv");
  o.budgets = {{"--avg-bits", 2.5}};  // start: 4 bits everywhere
  o.epochs = 4;
  o.log = tmp_dir() + "/conv.csv";
  SearchResult r = run_search(o);
  const double budget = 2.5 * r.policy.totals.params / 8.0;
  EXPECT_LE(static_cast<double>(r.policy.totals.weight_bytes), budget);
  EXPECT_LT(std::abs(r.expected.weight_bytes - budget) / budget, 0.05)
      << "Size(b) " << r.expected.weight_bytes << " vs budget " << budget;
  Policy back = load_policy(o.out);
  EXPECT_NO_THROW(check_policy(back, *make_model("lenet5", kCfg)));
  EXPECT_EQ(back.search["method"], "qpl");
  ASSERT_TRUE(back.search.contains("learned_bits"));
  double s = 0;
  int64_t n = 0;
  std::set<int> distinct;
  for (const auto& L : back.layers) {
    EXPECT_EQ(L.weight.scheme, "vecq");
    double b = back.search["learned_bits"][L.name]["weight"].get<double>();
    EXPECT_GE(b, 1.0);
    EXPECT_LE(b, 8.0);
    s += b * L.params;
    n += L.params;
    distinct.insert(L.weight.bits);
  }
  EXPECT_NEAR(s / n, 2.5, 0.3);  // the continuous bits average near the budget (scales cost a little)
  EXPECT_GE(distinct.size(), 2u) << "expected a mixed-precision result";
  // the CSV has one row per (epoch, layer, bit option)
  std::ifstream csv(o.log);
  std::string line;
  int rows = 0;
  std::getline(csv, line);
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 5 * 5 * 8);
}

TEST(QplSearch, DeterministicResumableAndRederivable) {
  SearchOptions a = qpl_options("det_a");
  a.budgets = {{"--avg-bits", 3}};
  SearchResult ra = run_search(a);
  SearchOptions b = qpl_options("det_b");
  b.budgets = {{"--avg-bits", 3}};
  SearchResult rb = run_search(b);
  EXPECT_EQ(layers_of(ra.policy), layers_of(rb.policy));
  EXPECT_EQ(ra.policy.search["learned_bits"], rb.policy.search["learned_bits"]);

  SearchOptions c = qpl_options("det_c");
  c.budgets = {{"--avg-bits", 3}};
  c.stop_after_epoch = 2;
  SearchResult rc1 = run_search(c);
  EXPECT_TRUE(rc1.stopped);
  EXPECT_FALSE(fs::exists(c.out));
  c.stop_after_epoch = 0;
  c.resume = true;
  SearchResult rc2 = run_search(c);
  EXPECT_EQ(layers_of(ra.policy), layers_of(rc2.policy));
  EXPECT_EQ(ra.policy.search["learned_bits"], rc2.policy.search["learned_bits"]);
  EXPECT_EQ(ra.expected.weight_bytes, rc2.expected.weight_bytes);
  SearchOptions d = c;
  auto q3 = std::make_shared<QplOptions>(options_as<QplOptions>(c.strategy.get(), "qpl"));
  q3->weight = "vecq:3";
  d.strategy = q3;
  EXPECT_TRUE(contains(error_of([&] { run_search(d); }), "strategy"));

  // --from-state: the learned bits re-derived for other budgets, each met
  for (double bits : {1.5, 2.0, 4.0, 6.0}) {
    RederiveOptions ro;
    ro.state = a.state;
    ro.budgets = {{"--avg-bits", bits}};
    ro.out = tmp_dir() + "/re.json";
    SearchResult rr = rederive_from_state(ro);
    EXPECT_LE(rr.policy.totals.avg_weight_bits, bits);
    EXPECT_EQ(rr.policy.search["method"], "qpl");
    EXPECT_TRUE(rr.policy.search.contains("learned_bits"));
  }
}

TEST(QplSearch, QssThenQplRecordsBothStagesAndResumes) {
  SearchOptions o = qpl_options("two");
  o.method = "qss+qpl";
  o.space_path = tmp_dir() + "/two_space.json";
  std::ofstream(o.space_path) << R"({"name": "two", "weight": ["twn", "fixed:{2,3,4}", "vecq:{2,3}"], "act": ["fp32"]})";
  o.budgets = {{"--avg-bits", 2.5}};
  o.epochs = 2;
  o.warmup = 0;
  auto st = std::make_shared<QssQplOptions>();
  st->qpl.bits_min = 1;
  st->qpl.bits_max = 6;
  o.strategy = st;
  o.log = tmp_dir() + "/two.csv";
  ArchAdamOptions bits;
  bits.lr = 0.1;
  SearchResult r = run_qss_qpl(o, bits);
  Policy p = load_policy(o.out);
  EXPECT_EQ(p.search["method"], "qss+qpl");
  ASSERT_TRUE(p.search.contains("stages"));
  EXPECT_EQ(p.search["stages"]["qss"]["method"], "qss");
  EXPECT_EQ(p.search["stages"]["qpl"]["method"], "qpl");
  EXPECT_LE(static_cast<double>(p.totals.weight_bytes), 2.5 * p.totals.params / 8.0);
  Policy s1 = load_policy(tmp_dir() + "/two.qss.json");
  for (size_t l = 0; l < p.layers.size(); ++l)
    EXPECT_EQ(p.layers[l].weight.scheme, s1.layers[l].weight.scheme) << p.layers[l].name;  // QSS's schemes
  EXPECT_TRUE(fs::exists(tmp_dir() + "/two.qss.state.pt"));
  EXPECT_TRUE(fs::exists(tmp_dir() + "/two.qss.csv"));
  EXPECT_TRUE(fs::exists(o.log));

  // interrupted in the QPL stage (epoch 3 of 2 + 2), then --resume: the same policy
  SearchOptions c = o;
  c.out = tmp_dir() + "/two_c.json";
  c.state = tmp_dir() + "/two_c.state.pt";
  c.log.clear();
  c.stop_after_epoch = 3;
  EXPECT_TRUE(run_qss_qpl(c, bits).stopped);
  EXPECT_FALSE(fs::exists(c.out));
  c.stop_after_epoch = 0;
  c.resume = true;
  run_qss_qpl(c, bits);
  Policy pc = load_policy(c.out);
  EXPECT_EQ(layers_of(p), layers_of(pc));
  EXPECT_EQ(p.search["learned_bits"], pc.search["learned_bits"]);
}

// ================================================================= CLI
using autoqnn_test::CliResult;
using autoqnn_test::run_cli;

TEST(QplDefaults, ActsArePactWhereTheInputIsNeverNegativeAtTheBudgetsBits) {
  ModelPtr m = make_model("lenet5", kCfg);
  load_checkpoint_weights(fp32_checkpoint(), *m);
  torch::manual_seed(4);
  TensorDataset signed_images{torch::randn({256, 1, 28, 28}), torch::zeros({256}, torch::kLong)};
  QplOptions o;
  // 9 BOPs per MAC shared with 3-bit weights -> 3-bit acts; conv1 sees the signed image
  auto acts = qpl_default_acts(*m, signed_images, 9.0, 3.0, o, 1);
  ASSERT_EQ(acts.size(), 5u);
  EXPECT_EQ(acts.at("conv1"), "uniform:3");
  for (const char* l : {"conv2", "fc1", "fc2", "fc3"}) EXPECT_EQ(acts.at(l), "pact:3") << l;  // after a ReLU
  // a non-negative input makes the first layer PACT too; the bits clamp to the act range
  TensorDataset positive{signed_images.images.abs(), signed_images.labels};
  acts = qpl_default_acts(*m, positive, 100.0, 2.0, o, 1);
  EXPECT_EQ(acts.at("conv1"), "pact:8");
  acts = qpl_default_acts(*m, positive, 1.0, 4.0, o, 1);
  EXPECT_EQ(acts.at("fc1"), "pact:2");
  EXPECT_THROW(qpl_default_acts(*m, positive, 0.0, 4.0, o, 1), std::invalid_argument);
}

TEST(QplCli, UsageErrorsAndARun) {
  const std::string base = "search --model lenet5 --dataset synthetic --train-limit 300 --batch-size 50 --threads 2 "
                           "--checkpoint " + fp32_checkpoint() + " --avg-bits 2.5 --epochs 1 --warmup 0";
  const std::string out = tmp_dir() + "/cli.json";
  // no --qpl-scheme: VecQ at the budget's bits (2.5 -> vecq:3, bits starting at 2.5)
  const std::string auto_out = tmp_dir() + "/cli_auto.json";
  auto r = run_cli(base + " --method qpl --out " + auto_out);
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "--qpl-scheme vecq:3 --init-bits 2.5")) << r.out;
  EXPECT_EQ(load_policy(auto_out).search["strategy"]["weight"], "vecq:3");
  EXPECT_EQ(load_policy(auto_out).layers[1].act.to_string(), "fp32");  // no BOPs budget: acts not quantized
  // under a BOPs budget without --qpl-act: every layer's act scheme at the budget's act bits (7.5 / 2.5 = 3)
  r = run_cli(base + " --method qpl --wa-bits 2.5,3 --out " + auto_out);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "acts for the BOPs budget: ")) << r.out;
  Policy wa = load_policy(auto_out);
  int64_t macs = 0;
  for (const auto& l : wa.layers) macs += l.macs;
  EXPECT_LE(wa.totals.bops, 7.5 * static_cast<double>(macs) * (1 + 1e-9));
  for (const auto& l : wa.layers) {
    EXPECT_TRUE(l.act.scheme == "pact" || l.act.scheme == "uniform") << l.name << " " << l.act.to_string();
    if (l.name != "conv1") EXPECT_EQ(l.act.scheme, "pact") << l.name;  // inputs after a ReLU
  }
  r = run_cli(base + " --method qss+qpl --qpl-scheme vecq:4 --out " + out);
  EXPECT_EQ(r.rc, 2) << r.out;
  r = run_cli(base + " --method qpl --qpl-scheme nosuch:4 --out " + out);
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "nosuch")) << r.out;
  r = run_cli(base + " --method qpl --qpl-scheme twn --bits-min 3 --out " + out);
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "twn") && contains(r.out, "conv1")) << r.out;
  r = run_cli(base + " --method magic --out " + out);
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "qss+qpl")) << r.out;
  EXPECT_FALSE(fs::exists(out));

  r = run_cli(base + " --method qpl --qpl-scheme vecq:4 --bit-lr 0.1 --seed 2 --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  Policy p = load_policy(out);
  EXPECT_LE(p.totals.avg_weight_bits, 2.5);
  EXPECT_EQ(p.search["method"], "qpl");
  EXPECT_EQ(p.search["optimizer"]["arch"]["lr"], 0.1);
  // a policy as the scheme source
  r = run_cli(base + " --method qpl --qpl-policy " + out + " --out " + tmp_dir() + "/cli2.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(load_policy(tmp_dir() + "/cli2.json").search["strategy"]["source"].get<std::string>(), out));
  // every policy the search writes (qpl, and qss+qpl with both stages' provenance) is valid under the schema
  r = run_cli(base + " --method qss+qpl --space " + std::string(AUTOQNN_SOURCE_DIR) +
              "/configs/search_space/lowbit.json --out " + tmp_dir() + "/cli3.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto schema = JsonSchema::load(std::string(AUTOQNN_SOURCE_DIR) + "/configs/policy.schema.json");
  for (const std::string& f : {out, tmp_dir() + "/cli2.json", tmp_dir() + "/cli3.json"}) {
    std::ifstream in(f);
    auto v = schema.validate(json::parse(in));
    EXPECT_TRUE(v.empty()) << f << ": " << (v.empty() ? "" : v[0].path + " " + v[0].message);
  }
}
