// search --init-from-sensitivity: the prior built from an `analyze` table (search/sensitivity_prior.h) and
// QSS's theta_init option that carries it into the supernet's architecture logits.
#include <gtest/gtest.h>

#include <cmath>

#include "autoqnn/model.h"
#include "autoqnn/sensitivity.h"
#include "search/qss.h"
#include "search/search_space.h"
#include "search/sensitivity_prior.h"

using namespace autoqnn;
using namespace autoqnn::search;
using nlohmann::json;

namespace {
const ModelConfig kCfg{1, 28, 10};
ptq::SensitivityRow row(const std::string& layer, const std::string& w, const std::string& a, double drop,
                        double sqnr, double top1 = 0.8) {
  ptq::SensitivityRow r;
  r.layer = layer;
  r.weight = w;
  r.act = a;
  r.drop = drop;
  r.top1 = top1;
  r.sqnr_db = sqnr;
  return r;
}
}  // namespace

TEST(SensitivityPrior, LogitIsMinusScaleTimesDropWithSqnrFallback) {
  // spec text is canonicalised ("binary" -> "binary:1", "fixed:08" -> "fixed:8")
  std::vector<ptq::SensitivityRow> rows = {row("conv1", "fixed:2", "fp32", 0.05, 10),
                                           row("conv1", "fixed:08", "fp32", -0.002, 40),
                                           row("fc1", "binary", "fixed:8", 0.30, 3)};
  json p = theta_prior_from_sensitivity(rows, 20.0, "s.csv");
  EXPECT_DOUBLE_EQ(p["conv1"]["fixed:2|fp32"].get<double>(), -1.0);
  EXPECT_DOUBLE_EQ(p["conv1"]["fixed:8|fp32"].get<double>(), 0.0);  // a gain is not rewarded
  EXPECT_DOUBLE_EQ(p["fc1"]["binary:1|fixed:8"].get<double>(), -6.0);
  // --no-accuracy tables (top1 = drop = 0): -K * 10^(-SQNR/10); exact candidates (inf dB) at 0
  std::vector<ptq::SensitivityRow> noacc = {row("conv1", "fixed:2", "fp32", 0, 10, 0),
                                            row("conv1", "fp32", "fp32", 0, INFINITY, 0)};
  json q = theta_prior_from_sensitivity(noacc, 20.0, "s.csv");
  EXPECT_NEAR(q["conv1"]["fixed:2|fp32"].get<double>(), -2.0, 1e-12);
  EXPECT_DOUBLE_EQ(q["conv1"]["fp32|fp32"].get<double>(), 0.0);
  // errors name the problem
  EXPECT_THROW(theta_prior_from_sensitivity(rows, 0.0, "s.csv"), std::invalid_argument);
  EXPECT_THROW(theta_prior_from_sensitivity({}, 20.0, "s.csv"), std::invalid_argument);
  rows.push_back(row("conv1", "fixed:2", "fp32", 0.1, 9));
  try {
    theta_prior_from_sensitivity(rows, 20.0, "s.csv");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("twice"), std::string::npos) << e.what();
  }
  rows.back() = row("conv1", "nosuch:3", "fp32", 0.1, 9);
  EXPECT_THROW(theta_prior_from_sensitivity(rows, 20.0, "s.csv"), std::invalid_argument);
}

TEST(SensitivityPrior, ThetaInitSetsTheStartingDistribution) {
  auto space = SearchSpace::from_json(json::parse(R"({"weight": ["binary", "fixed:{2,8}"], "act": ["fp32"]})"));
  QssOptions o;
  o.theta_init = {{"conv2", {{"binary|fp32", -3.0}, {"fixed:2|fp32", -1.0}}}};
  QssStrategy s(make_model("lenet5", kCfg), space, o);
  auto& net = s.supernet();
  // conv2: softmax(-3, -1, 0) (fixed:8 not named -> 0); every other layer uniform
  for (size_t g = 0; g < net.groups().size(); ++g) {
    auto p = net.probabilities(static_cast<int64_t>(g));
    if (net.groups()[g].name == "conv2") {
      double z = std::exp(-3.0) + std::exp(-1.0) + 1.0;
      EXPECT_NEAR(p[0].item<double>(), std::exp(-3.0) / z, 1e-6);
      EXPECT_NEAR(p[1].item<double>(), std::exp(-1.0) / z, 1e-6);
      EXPECT_NEAR(p[2].item<double>(), 1.0 / z, 1e-6);
    } else {
      EXPECT_NEAR(p[0].item<double>(), 1.0 / 3, 1e-6) << net.groups()[g].name;
    }
  }
  // the option round-trips through the state's config and is validated
  auto back = QssOptions::from_json(s.config_json());
  EXPECT_EQ(back.theta_init, o.theta_init);
  EXPECT_FALSE(QssOptions().to_json().contains("theta_init"));  // older states keep their resume key
  EXPECT_THROW(QssOptions::from_json(json::parse(R"({"theta_init": {"conv2": {"binary|fp32": "x"}}})")),
               std::invalid_argument);
  QssOptions bad;
  bad.theta_init = {{"conv9", {{"binary|fp32", -1.0}}}};
  try {
    QssStrategy t(make_model("lenet5", kCfg), space, bad);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("conv9"), std::string::npos) << e.what();
  }
  // shared granularity: one group, the mean over its layers
  auto shared = SearchSpace::from_json(
      json::parse(R"({"weight": ["binary", "fixed:8"], "act": ["fp32"], "granularity": "shared"})"));
  QssOptions so;
  so.theta_init = {{"conv1", {{"binary|fp32", -2.0}}}, {"conv2", {{"binary|fp32", -4.0}}}};
  QssStrategy sh(make_model("lenet5", kCfg), shared, so);
  ASSERT_EQ(sh.supernet().groups().size(), 1u);
  auto p = sh.supernet().probabilities(0);
  EXPECT_NEAR(p[0].item<double>(), std::exp(-3.0) / (std::exp(-3.0) + 1.0), 1e-6);
}

TEST(SensitivityPrior, AnalyzeTableSteersTheStartTowardsHarmlessCandidates) {
  // weight-error table (no evaluation): binary weights lose far more SQNR than fixed:8
  torch::manual_seed(5);
  auto model = make_model("lenet5", kCfg);
  auto space = SearchSpace::from_json(json::parse(R"({"weight": ["binary", "fixed:{3,8}"], "act": ["fp32"]})"));
  std::vector<std::string> names;
  for (const auto& l : quant_layers(*model)) names.push_back(l.name);
  auto sets = space.resolve(names);
  std::vector<std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>>> cands;
  for (const auto& s : sets) {
    cands.emplace_back();
    for (int64_t k = 0; k < s.size(); ++k) cands.back().emplace_back(s.weight[s.weight_index(k)], s.act[s.act_index(k)]);
  }
  ptq::SensitivityOptions opt;
  opt.accuracy = false;
  TensorDataset d;
  d.images = torch::randn({8, 1, 28, 28});
  d.labels = torch::zeros({8}, torch::kLong);
  auto rows = ptq::analyze_sensitivity(*model, cands, d, d, opt);
  ASSERT_EQ(rows.size(), 15u);
  QssOptions o;
  o.theta_init = theta_prior_from_sensitivity(ptq::parse_sensitivity_csv(ptq::sensitivity_csv(rows), "s.csv"), 20, "s.csv");
  QssStrategy s(model, space, o);
  for (size_t g = 0; g < s.supernet().groups().size(); ++g) {
    auto p = s.supernet().probabilities(static_cast<int64_t>(g));
    EXPECT_LT(p[0].item<double>(), p[1].item<double>()) << s.supernet().groups()[g].name;  // binary < fixed:3
    EXPECT_LT(p[1].item<double>(), p[2].item<double>()) << s.supernet().groups()[g].name;  // fixed:3 < fixed:8
  }
}
