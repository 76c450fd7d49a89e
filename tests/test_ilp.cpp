// The budget fill (constraints.h fill_budget), the exact allocators (allocation.h: DP, GLPK) against brute
// force, and `--method ilp` end to end on the synthetic LeNet-5 (a front of policies from one analysis).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "autoqnn/policy.h"
#include "autoqnn/act_stats.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/hessian_trace.h"
#include "autoqnn/number_text.h"
#include "search/allocation.h"
#include "search/constraints.h"
#include "search/ilp.h"
#include "search/qss.h"
#include "search/search_driver.h"
#include "test_fixtures.h"

using namespace autoqnn;
using namespace autoqnn::search;

namespace {

std::string tmp_dir() {
  static std::string d = autoqnn_test::make_tmp_dir("ilp");
  return d;
}

// Groups of "bit" options: option o costs (o + 1) x size bytes, BOPs (o + 1) x macs, a fixed act cost;
// probabilities peaked on the cheapest option (a search that under-spends); quality increasing in bits
// with a random slope (when `quality`).
ChoiceProblem bits_problem(std::mt19937& rng, int groups, int options, bool quality) {
  std::uniform_real_distribution<double> u(0, 1);
  ChoiceProblem p;
  p.num_weights = 0;
  for (int g = 0; g < groups; ++g) {
    ChoiceGroup cg;
    cg.name = "g" + std::to_string(g);
    cg.layers = {cg.name};
    const double size = std::floor(20 + 200 * u(rng)), macs = std::floor(1000 + 9000 * u(rng)), slope = 0.2 + u(rng);
    const double act = std::floor(100 + 100 * u(rng));  // weight bits only: the act cost does not change
    p.num_weights += static_cast<int64_t>(size) * 8;
    double sum = 0;
    for (int o = 0; o < options; ++o) {
      cg.labels.push_back("b" + std::to_string(o + 1));
      const double pr = o == 0 ? 5.0 : u(rng);
      cg.prob.push_back(pr);
      sum += pr;
      cg.cost.push_back({(o + 1) * size, act, (o + 1) * macs});
      if (quality) cg.quality.push_back(-slope * std::exp(-0.5 * o));
    }
    for (auto& pr : cg.prob) pr /= sum;
    p.groups.push_back(cg);
  }
  return p;
}

// Random options (no order): cost and quality independent.
ChoiceProblem random_problem(std::mt19937& rng, int groups, int options) {
  std::uniform_real_distribution<double> u(0, 1);
  ChoiceProblem p;
  p.num_weights = 1000;
  for (int g = 0; g < groups; ++g) {
    ChoiceGroup cg;
    cg.name = "g" + std::to_string(g);
    for (int o = 0; o < options; ++o) {
      cg.labels.push_back("o" + std::to_string(o));
      cg.prob.push_back(1.0 / options);
      cg.cost.push_back({std::floor(10 + 200 * u(rng)), std::floor(100 + 900 * u(rng)), std::floor(1e4 * u(rng))});
      cg.quality.push_back(u(rng) * 3 - 2);
    }
    p.groups.push_back(cg);
  }
  return p;
}

// Brute force: the best summed quality within the budgets (-inf when none fits).
double brute_force(const ChoiceProblem& p, const Budgets& b) {
  const size_t G = p.groups.size();
  std::vector<int64_t> c(G, 0);
  double best = -std::numeric_limits<double>::infinity();
  for (;;) {
    if (within(total_cost(p, c), b)) best = std::max(best, choice_quality(p, c));
    size_t g = 0;
    while (g < G && ++c[g] == static_cast<int64_t>(p.groups[g].cost.size())) c[g++] = 0;
    if (g == G) break;
  }
  return best;
}

double sum_max(const ChoiceProblem& p, CostKind k) {
  double s = 0;
  for (const auto& g : p.groups) {
    double m = 0;
    for (const auto& c : g.cost) m = std::max(m, c.at(k));
    s += m;
  }
  return s;
}

}  // namespace

// ================================================================= budget fill
TEST(BudgetFill, SpendsTheBudgetToWithinTwoPercentWhereAnUpgradeFits) {
  std::mt19937 rng(3);
  int tight = 0, loose = 0;
  for (bool quality : {false, true}) {
    for (int trial = 0; trial < 10; ++trial) {
      ChoiceProblem p = bits_problem(rng, 12, 8, quality);
      const double lo = minimum_cost(p).weight_bytes, hi = sum_max(p, CostKind::WeightBytes);
      for (double f : {0.1, 0.3, 0.6}) {
        Budgets b;
        b.set(CostKind::WeightBytes, lo + f * (hi - lo), "test");
        Derivation d = derive(p, b);  // argmax = the cheapest option everywhere: 1 bit
        EXPECT_EQ(d.argmax_cost.weight_bytes, lo);
        EXPECT_GT(d.fills, 0);
        EXPECT_LE(d.cost.weight_bytes, b.limit(CostKind::WeightBytes));
        // within 2 % of the budget, or no upgrade of any group fits in what is left
        const double left = b.limit(CostKind::WeightBytes) - d.cost.weight_bytes;
        if (left > 0.02 * b.limit(CostKind::WeightBytes)) {
          for (size_t g = 0; g < p.groups.size(); ++g) {
            const auto c = static_cast<size_t>(d.choice[g]);
            if (c + 1 < p.groups[g].cost.size())
              EXPECT_GT(p.groups[g].cost[c + 1].weight_bytes - p.groups[g].cost[c].weight_bytes, left)
                  << "quality " << quality << " trial " << trial << " f " << f << " group " << g;
          }
          ++loose;
        } else {
          ++tight;
        }
      }
      // a budget above the largest policy: every group ends on its best option (the most expensive here)
      Budgets big;
      big.set(CostKind::WeightBytes, 2 * hi, "test");
      Derivation d = derive(p, big);
      for (size_t g = 0; g < p.groups.size(); ++g) EXPECT_EQ(d.choice[g], 7) << g;
    }
  }
  EXPECT_GT(tight, 4 * loose) << tight << " within 2 %, " << loose << " not (no upgrade fits)";
}

TEST(BudgetFill, NeverTradesAwayPrecisionWithoutMeasuredQuality) {
  // without a quality list, an upgrade must cost at least as much in every kind: option 1 has more weight
  // bytes but fewer act bytes (lower act bits) and is never taken by the fill.
  ChoiceProblem p;
  p.num_weights = 800;
  p.groups.push_back({"a", {"a"}, {"w2a8", "w4a4", "w4a8"}, {0.8, 0.15, 0.05}, {{100, 800, 0}, {200, 400, 0}, {200, 800, 0}}});
  Budgets b;
  b.set(CostKind::WeightBytes, 200, "test");
  Derivation d = derive(p, b);
  EXPECT_EQ(d.choice[0], 2);
  EXPECT_EQ(d.fills, 1);
  // with a BOPs budget as well, the fill spends on the kind that binds first and stays within both
  p.groups[0].cost = {{100, 800, 10}, {200, 400, 20}, {200, 800, 40}};
  b.set(CostKind::Bops, 30, "test");
  d = derive(p, b);
  EXPECT_EQ(d.choice[0], 0);  // w4a8 would exceed the BOPs, w4a4 lowers the act bits
  EXPECT_EQ(d.fills, 0);
}

// ================================================================= exact allocation
TEST(Allocation, DpAndGlpkAgreeAndAreOptimalOnSmallProblems) {
  std::mt19937 rng(5);
  int checked = 0;
  for (int trial = 0; trial < 40; ++trial) {
    ChoiceProblem p = random_problem(rng, 2 + trial % 5, 2 + trial % 3);  // <= 6 groups, <= 4 options
    const Cost lo = minimum_cost(p);
    const double hw = sum_max(p, CostKind::WeightBytes), hb = sum_max(p, CostKind::Bops);
    for (double f : {0.0, 0.2, 0.5, 0.8, 1.0}) {
      Budgets b;
      b.set(CostKind::WeightBytes, lo.weight_bytes + f * (hw - lo.weight_bytes), "test");
      const double best = brute_force(p, b);
      Allocation dp = allocate(p, b, AllocSolver::Dp), lp = allocate(p, b, AllocSolver::Glpk);
      EXPECT_EQ(dp.solver, "dp");
      EXPECT_EQ(lp.solver, "glpk");
      EXPECT_NEAR(dp.quality, best, 1e-9) << trial << " " << f;
      EXPECT_NEAR(lp.quality, best, 1e-9) << trial << " " << f;
      EXPECT_TRUE(within(dp.cost, b) && within(lp.cost, b));
      // several budgets at once: weight + BOPs (+ an act footprint), GLPK against brute force
      b.set(CostKind::Bops, lo.bops + (1 - f) * (hb - lo.bops), "test");
      b.set(CostKind::ActBytes, 700, "test");
      const double best2 = brute_force(p, b);
      if (std::isinf(best2)) {
        EXPECT_THROW(allocate(p, b, AllocSolver::Glpk), InfeasibleBudget);
        continue;
      }
      Allocation lp2 = allocate(p, b);
      EXPECT_EQ(lp2.solver, "glpk");  // two Sum budgets: the DP does not apply
      EXPECT_NEAR(lp2.quality, best2, 1e-9) << trial << " " << f;
      EXPECT_TRUE(within(lp2.cost, b));
      EXPECT_THROW(allocate(p, b, AllocSolver::Dp), std::invalid_argument);
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
  // a budget below the cheapest policy names the minimum
  ChoiceProblem p = random_problem(rng, 3, 3);
  Budgets b;
  b.set(CostKind::WeightBytes, minimum_cost(p).weight_bytes - 1, "--budget-kib x");
  std::string m = autoqnn_test::error_of([&] { allocate(p, b); });
  EXPECT_TRUE(autoqnn_test::contains(m, "minimum feasible budget is --budget-kib")) << m;
}

TEST(Allocation, NumberListsAndSolverNames) {
  // the one parser of comma lists (autoqnn/number_text.h) and the budgets' positive lists on top of it
  EXPECT_EQ(autoqnn::parse_number_list("0.5,-2,3e1", "--mean"), (std::vector<double>{0.5, -2, 30}));
  for (const char* bad : {"", "1,", ",1", "1,,2", "2x", "1,x", "nan", "inf", "1 2"})
    EXPECT_THROW(autoqnn::parse_number_list(bad, "--mean"), std::invalid_argument) << bad;
  EXPECT_TRUE(autoqnn_test::contains(autoqnn_test::error_of([] { autoqnn::parse_number_list("1,x", "--mean"); }),
                                     "--mean: 'x' in '1,x' is not a number"));
  EXPECT_EQ(parse_budget_list("1,1.25,3", "--budgets"), (std::vector<double>{1, 1.25, 3}));
  EXPECT_TRUE(autoqnn_test::contains(autoqnn_test::error_of([] { parse_budget_list("1,x", "--budgets"); }),
                                     "--budgets: 'x'"));
  EXPECT_TRUE(autoqnn_test::contains(autoqnn_test::error_of([] { parse_budget_list("1,-2", "--budgets"); }),
                                     "--budgets: -2 in '1,-2' is not a positive number"));
  EXPECT_THROW(parse_budget_list("0", "--budgets"), std::invalid_argument);
  EXPECT_THROW(parse_budget_list("", "--budgets"), std::invalid_argument);
  EXPECT_EQ(parse_alloc_solver("glpk"), AllocSolver::Glpk);
  EXPECT_THROW(parse_alloc_solver("cplex"), std::invalid_argument);
}

// ================================================================= --method ilp end to end
namespace {
const char* kSpace = R"({
  "name": "tiny", "granularity": "per-layer",
  "weight": ["binary", "twn", "fixed:{2,3,4,8}"],
  "act": ["fp32"]
})";

SearchOptions ilp_options(const std::string& tag, const std::vector<double>& front,
                          const std::string& proxy = "accuracy") {
  static std::string ck = autoqnn_test::train_synthetic_lenet5(tmp_dir() + "/lenet5_fp32.pt");
  static std::string space = [] {
    std::string p = tmp_dir() + "/tiny_space.json";
    std::ofstream(p) << kSpace;
    return p;
  }();
  SearchOptions o;
  o.method = "ilp";
  o.model = "lenet5";
  o.checkpoint = ck;
  o.space_path = space;
  o.data.dataset = "synthetic";
  o.data.train_limit = 600;  // val: 100 images
  o.batch_size = 100;
  o.seed = 3;
  o.calib_batches = 1;
  auto io = std::make_shared<IlpOptions>();
  io->budgets_bits = front;
  io->proxy = proxy;
  o.strategy = io;
  o.out = tmp_dir() + "/" + tag + ".json";
  return o;
}

std::string read_all(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
// The policy of one point of a front written as <stem>.json: <stem>.<bits>bits.json.
Policy front_policy(const std::string& stem, double bits) {
  char tag[32];
  std::snprintf(tag, sizeof tag, ".%gbits.json", bits);
  return load_policy(tmp_dir() + "/" + stem + tag);
}
}  // namespace

TEST(Ilp, FrontPoliciesMeetTheirBudgetsAndAreRepeatable) {
  const std::vector<double> front = {1.25, 2, 3};
  SearchOptions o = ilp_options("front_a", front);
  run_method(o);
  double prev = 0;
  for (double bits : front) {
    Policy p = front_policy("front_a", bits);
    const double limit = p.search["budget"]["weight_bytes"].get<double>();
    EXPECT_NEAR(p.search["budget"]["avg_weight_bits"].get<double>(), bits, 1e-9);
    EXPECT_LE(p.totals.weight_bytes, limit) << bits;
    EXPECT_GT(static_cast<double>(p.totals.weight_bytes), prev);
    prev = static_cast<double>(p.totals.weight_bytes);
    EXPECT_EQ(p.search["method"], "ilp");
    EXPECT_LE(p.search["derivation"]["cost"]["weight_bytes"].get<double>(), limit);
  }
  const std::string csv = read_all(tmp_dir() + "/front_a.front.csv");
  EXPECT_TRUE(autoqnn_test::contains(csv, "budget,weight_bytes,avg_bits")) << csv;
  EXPECT_TRUE(autoqnn_test::contains(csv, "1.25bits,")) << csv;
  // same seed, same policies
  SearchOptions o2 = ilp_options("front_b", front);
  run_method(o2);
  for (double bits : front)
    EXPECT_EQ(front_policy("front_a", bits).to_json()["layers"], front_policy("front_b", bits).to_json()["layers"])
        << bits;
  // an infeasible point names the minimum before anything is written
  SearchOptions bad = ilp_options("front_bad", {0.5, 2});
  std::string m = autoqnn_test::error_of([&] { run_method(bad); });
  EXPECT_TRUE(autoqnn_test::contains(m, "minimum feasible budget is")) << m;
  EXPECT_FALSE(std::ifstream(tmp_dir() + "/front_bad.2bits.json").good());
}

// The Hutchinson estimate against the exact trace of the last layer's block: for logits z = W a + b under
// the mean cross-entropy, Tr(H_W) = mean_n sum_k p_k (1 - p_k) ||a_n||^2.
namespace {
ModelPtr trained_synthetic_lenet5() {
  static std::string ck = autoqnn_test::train_synthetic_lenet5(tmp_dir() + "/lenet5_fp32.pt");
  ModelPtr m = make_model("lenet5", autoqnn_test::kSyntheticCfg);
  load_checkpoint_weights(ck, *m);
  return m;
}
TensorDataset synthetic_train_head(int64_t train_limit, int64_t n) {
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = train_limit;
  return load_splits(d).train.head(n);
}
}  // namespace

TEST(HessianTrace, HutchinsonMatchesTheExactTraceOfTheLastLayer) {
  ModelPtr m = trained_synthetic_lenet5();
  // one image: the exact formula needs each image's fc3 input next to its probabilities, and the stats
  // collector shuffles its batch
  TensorDataset data = synthetic_train_head(64, 1);
  ptq::StatsOptions so;
  so.batches = 1;
  so.batch_size = data.size();
  so.keep_inputs = data.size();
  auto a = ptq::collect_act_stats(*m, data, so).at("fc3").input.to(torch::kFloat64).flatten(1);
  torch::Tensor p;
  {
    torch::NoGradGuard ng;
    m->eval();
    p = torch::softmax(m->forward(data.images), 1).to(torch::kFloat64);
  }
  const double exact = ((p * (1 - p)).sum(1) * a.pow(2).sum(1)).mean().item<double>();
  HessianTraceOptions ho;
  ho.batches = 1;
  ho.batch_size = data.size();
  ho.samples = 600;
  auto t = hessian_traces(*m, data, ho);
  ASSERT_EQ(t.size(), 5u);
  EXPECT_EQ(t[4].layer, "fc3");
  EXPECT_EQ(t[4].params, 840);
  EXPECT_NEAR(t[4].trace, exact, 0.1 * exact) << "+- " << t[4].std_error;
  EXPECT_LT(t[4].std_error, 0.07 * exact);  // one image: a Hessian of rank <= 9, so a noisy estimator
  // the same seed, the same estimate; the model's flags are restored
  EXPECT_EQ(hessian_traces(*m, data, ho)[2].trace, t[2].trace);
  for (const auto& q : m->parameters()) EXPECT_TRUE(q.requires_grad());
  EXPECT_THROW(hessian_traces(*m, TensorDataset{}, ho), std::invalid_argument);
  // the Fisher estimator: the last layer's block is its Gauss-Newton block, the same exact value
  HessianTraceOptions fo = ho;
  fo.estimator = TraceEstimator::Fisher;
  fo.act_traces = true;
  auto f = hessian_traces(*m, data, fo);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_NEAR(f[4].trace, exact, 0.1 * exact) << "+- " << f[4].std_error;
  EXPECT_EQ(f[4].draws, 600);
  EXPECT_EQ(f[4].images, 1);
  EXPECT_EQ(hessian_traces(*m, data, fo)[2].trace, f[2].trace);
  // ... and the trace in fc3's input a: the Hessian of the loss in a is W^T (diag(p) - p p^T) W
  auto W = m->named_parameters()["fc3.weight"].detach().to(torch::kFloat64);
  auto p0 = p[0];
  const double exact_a = ((torch::diag(p0) - torch::outer(p0, p0)).mm(W.mm(W.t()))).trace().item<double>();
  EXPECT_EQ(f[4].act_numel, 84);
  EXPECT_NEAR(f[4].act_trace, exact_a, 0.1 * exact_a) << "+- " << f[4].act_std_error;
  EXPECT_TRUE(std::isnan(t[4].act_trace));  // Hutchinson: weights only
  for (const auto& l : quant_layers(*m)) EXPECT_FALSE(l.layer->act_quantizer()) << l.name;  // probes removed
}

// Every layer (not only the last): LeNet-5 is piecewise linear in each weight (ReLU, max-pool), so the
// Fisher trace and Hutchinson's Hessian trace estimate the same number; they agree within their standard
// errors, with a smaller standard error per draw; the Fisher's default is 4 batches x 8 draws.
TEST(HessianTrace, FisherAgreesWithHutchinsonOnEveryLayer) {
  ModelPtr m = trained_synthetic_lenet5();
  TensorDataset data = synthetic_train_head(256, 32);
  HessianTraceOptions ho;
  ho.batches = 1;
  ho.batch_size = 32;
  ho.samples = 300;
  HessianTraceOptions fo = ho;
  fo.estimator = TraceEstimator::Fisher;
  auto h = hessian_traces(*m, data, ho), f = hessian_traces(*m, data, fo);
  ASSERT_EQ(h.size(), f.size());
  for (size_t l = 0; l < h.size(); ++l) {
    const double se = std::sqrt(h[l].std_error * h[l].std_error + f[l].std_error * f[l].std_error);
    EXPECT_GT(f[l].trace, 0) << h[l].layer;
    EXPECT_NEAR(f[l].trace, h[l].trace, 4 * se) << h[l].layer << ": hutchinson " << h[l].trace << " +- "
                                                 << h[l].std_error << ", fisher " << f[l].trace << " +- " << f[l].std_error;
    EXPECT_LT(f[l].std_error, h[l].std_error) << h[l].layer;  // a smaller variance per draw, too
  }
  HessianTraceOptions dflt;
  dflt.estimator = TraceEstimator::Fisher;
  dflt.batch_size = 8;
  auto dd = hessian_traces(*m, data, dflt);
  EXPECT_EQ(dd[0].draws, 32);   // 4 batches x 8 draws
  EXPECT_EQ(dd[0].images, 32);
  fo.samples = -1;
  EXPECT_THROW(hessian_traces(*m, data, fo), std::invalid_argument);
}

// --ilp-proxy hessian: a front from Hessian traces x weight errors, no evaluation; refused where acts are searched
TEST(Ilp, HessianProxyFrontMeetsItsBudgetsAndIsRefusedForActCandidates) {
  const std::vector<double> front = {1.25, 2};
  SearchOptions o = ilp_options("hess", front, "hessian");
  run_method(o);
  int64_t prev = 0;
  for (double bits : front) {
    Policy p = front_policy("hess", bits);
    EXPECT_LE(p.totals.weight_bytes, p.search["budget"]["weight_bytes"].get<double>()) << bits;
    EXPECT_GT(p.totals.weight_bytes, prev) << bits;  // a larger budget buys more precision
    prev = p.totals.weight_bytes;
    EXPECT_TRUE(autoqnn_test::contains(p.search["sensitivity"].get<std::string>(), "Hessian traces")) << bits;
    EXPECT_EQ(p.search["strategy"]["proxy"], "hessian");
  }
  SearchOptions wa = ilp_options("hess_wa", {2}, "hessian");
  wa.space_path = std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/wa.json";
  std::string m = autoqnn_test::error_of([&] { run_method(wa); });
  EXPECT_TRUE(autoqnn_test::contains(m, "ranks weight candidates only; layer 'conv1' has 4 act candidates")) << m;
  auto r = autoqnn_test::run_cli("search --model lenet5 --dataset synthetic --checkpoint " + o.checkpoint +
                                 " --method ilp --ilp-proxy hessian --sensitivity x.csv --budgets 2 --out " +
                                 tmp_dir() + "/hx.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(autoqnn_test::contains(r.out, "do not give --sensitivity")) << r.out;
  // --ilp-proxy fisher: the same front from the Fisher traces; its policies record the estimator
  SearchOptions f = ilp_options("fish", front, "fisher");
  run_method(f);
  IlpOptions t;  // the trace settings travel with the options (state file, provenance)
  t.proxy = "fisher";
  t.trace_batches = 3;
  t.trace_samples = 5;
  const IlpOptions back = IlpOptions::from_json(t.to_json());
  EXPECT_EQ(back.trace_batches, 3);
  EXPECT_EQ(back.trace_samples, 5);
  for (double bits : front) {
    Policy p = front_policy("fish", bits);
    EXPECT_LE(p.totals.weight_bytes, p.search["budget"]["weight_bytes"].get<double>()) << bits;
    EXPECT_TRUE(autoqnn_test::contains(p.search["sensitivity"].get<std::string>(), "Hessian traces (Fisher, 32 draws"))
        << p.search["sensitivity"];
    EXPECT_EQ(p.search["strategy"]["proxy"], "fisher");
  }
  // ... and it ranks act candidates too (the trace in each layer's input x the act error): a W+A front
  SearchOptions fwa = ilp_options("fish_wa", {2, 4}, "fisher");
  fwa.space_path = std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/wa.json";
  fwa.budgets["--wa-bits"] = 9;  // W3A3
  run_method(fwa);
  for (double bits : {2.0, 4.0}) {
    Policy p = front_policy("fish_wa", bits);
    EXPECT_LE(p.totals.weight_bytes, p.search["budget"]["weight_bytes"].get<double>()) << bits;
    EXPECT_LE(p.totals.bops, p.search["budget"]["bops"].get<double>()) << bits;
    EXPECT_TRUE(autoqnn_test::contains(p.search["sensitivity"].get<std::string>(), "x weight and act errors"));
    int act_bits_below_8 = 0;
    for (const auto& l : p.layers) act_bits_below_8 += l.act_bits < 8;
    EXPECT_GT(act_bits_below_8, 0) << bits;  // W3A3's BOPs cannot be met with 8-bit acts everywhere
  }
  r = autoqnn_test::run_cli("search --model lenet5 --dataset synthetic --checkpoint " + o.checkpoint +
                            " --method ilp --ilp-proxy fischer --budgets 2 --out " + tmp_dir() + "/hx.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(autoqnn_test::contains(r.out, "--ilp-proxy must be auto, accuracy, hessian or fisher, got 'fischer'")) << r.out;
  // the CLI's default proxy: fisher, or the table given with --sensitivity
  r = autoqnn_test::run_cli("search --model lenet5 --dataset synthetic --train-limit 600 --checkpoint " + o.checkpoint +
                            " --method ilp --avg-bits 2 --out " + tmp_dir() + "/hauto.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(load_policy(tmp_dir() + "/hauto.json").search["strategy"]["proxy"], "fisher");
  r = autoqnn_test::run_cli("search --model lenet5 --dataset synthetic --checkpoint " + o.checkpoint +
                            " --method ilp --ilp-proxy accuracy --trace-samples 8 --budgets 2 --out " + tmp_dir() + "/hx.json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(autoqnn_test::contains(r.out, "--trace-batches / --trace-samples need --ilp-proxy hessian or fisher"))
      << r.out;
}

// QSS with a sensitivity prior: the prior is the fill's measured quality where it names every candidate
TEST(BudgetFill, QssTakesItsQualityFromTheSensitivityPrior) {
  auto space = SearchSpace::from_json(nlohmann::json::parse(R"({"weight": ["binary", "fixed:{2,8}"], "act": ["fp32"]})"));
  QssOptions o;
  o.theta_init = {{"conv2", {{"binary|fp32", -3.0}, {"fixed:2|fp32", -1.0}, {"fixed:8|fp32", 0.0}}},
                  {"fc1", {{"binary|fp32", -2.0}}}};
  QssStrategy s(make_model("lenet5", autoqnn_test::kSyntheticCfg), space, o);
  ChoiceProblem p = s.choice_problem();
  for (const auto& g : p.groups) {
    if (g.name == "conv2") {
      EXPECT_EQ(g.quality, (std::vector<double>{-3.0, -1.0, 0.0}));
    } else {
      EXPECT_TRUE(g.quality.empty()) << g.name;  // fc1: not every candidate named; others: none
    }
  }
}
