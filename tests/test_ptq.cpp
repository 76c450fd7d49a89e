// Post-training quantization: ACIQ tables, bit allocation, bias correction, BN folding, per-channel bits
// (policy v2 + export), AFP level sets and search, the sensitivity CSV, and an end-to-end run_ptq.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "autoqnn/aciq.h"
#include "autoqnn/act_stats.h"
#include "autoqnn/afp_search.h"
#include "autoqnn/bias_correction.h"
#include "autoqnn/bit_allocation.h"
#include "autoqnn/bn_fold.h"
#include "autoqnn/convert.h"
#include "autoqnn/export.h"
#include "autoqnn/ptq.h"
#include "autoqnn/sensitivity.h"
#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"
#include "test_util.h"

using namespace autoqnn;
using namespace autoqnn::ptq;
namespace fs = std::filesystem;

namespace {
fs::path tmp_dir(const std::string& tag) {
  fs::path d = fs::path(AUTOQNN_TEST_TMP) / ("ptq_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
ModelPtr lenet() {
  torch::manual_seed(3);
  return make_model("lenet5", ModelConfig{});
}
TensorDataset ptq_data(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  TensorDataset d;
  d.images = torch::randn({n, 1, 28, 28});
  d.labels = torch::randint(0, 10, {n}, torch::kLong);
  return d;
}
}  // namespace

// ---------------------------------------------------------------- ACIQ
TEST(PtqAciq, SolvingTheMseEquationsReproducesThePublishedTables) {
  for (Prior p : {Prior::Laplace, Prior::Gauss}) {
    for (int m = 1; m <= 8; ++m) {
      const double a = aciq_solve(p, m);
      EXPECT_NEAR(a, aciq_published(p, m), 0.015) << prior_name(p) << " M=" << m;
      // a true minimum of the MSE
      EXPECT_LT(aciq_mse(p, a, m), aciq_mse(p, a * 0.97, m));
      EXPECT_LT(aciq_mse(p, a, m), aciq_mse(p, a * 1.03, m));
    }
  }
  // spot values: Laplace 4 bits 5.03 b, Gauss 4 bits 2.55 sigma
  EXPECT_NEAR(aciq_solve(Prior::Laplace, 4), 5.03, 0.01);
  EXPECT_NEAR(aciq_solve(Prior::Gauss, 4), 2.56, 0.01);
  EXPECT_THROW(parse_prior("cauchy"), std::invalid_argument);
}

TEST(PtqAciq, ClipUsesTheMPlusOneEntryAfterReluAndNeverExceedsTheRange) {
  ChannelStats s;
  s.mean = 0.5, s.mean_abs = 0.5, s.mad = 0.4, s.mean_sq = 0.5, s.min = 0, s.max = 100;
  EXPECT_NEAR(aciq_clip(Prior::Laplace, s, 4, true), aciq_solve(Prior::Laplace, 5) * 0.5, 1e-12);
  EXPECT_NEAR(aciq_clip(Prior::Laplace, s, 4, false), aciq_solve(Prior::Laplace, 4) * 0.4, 1e-12);
  EXPECT_NEAR(aciq_clip(Prior::Gauss, s, 4, true), aciq_solve(Prior::Gauss, 5) * std::sqrt(0.5), 1e-12);
  s.max = 1.0;  // the observed range caps the clip
  EXPECT_DOUBLE_EQ(aciq_clip(Prior::Laplace, s, 8, true), 1.0);
}

TEST(PtqAciq, ActivationStatisticsMatchTheData) {
  auto m = lenet();
  auto data = ptq_data(64, 5);
  StatsOptions so;
  so.batches = 2;
  so.batch_size = 32;
  auto st = collect_act_stats(*m, data, so);
  const auto& c1 = st.at("conv1");  // the raw images
  auto x = data.images.to(torch::kFloat64);
  EXPECT_NEAR(c1.all.mean, x.mean().item<double>(), 1e-9);
  EXPECT_NEAR(c1.all.mad, (x - x.mean()).abs().mean().item<double>(), 1e-9);
  EXPECT_NEAR(c1.all.max, x.max().item<double>(), 1e-6);
  EXPECT_FALSE(c1.one_sided());
  EXPECT_TRUE(st.at("fc2").one_sided());  // after a ReLU
  EXPECT_EQ(st.at("fc2").channels.size(), 120u);
}

// ---------------------------------------------------------------- bit allocation
TEST(PtqBitAlloc, KeepsTheAverageExactlyAndFollowsTheTwoThirdsRule) {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> ln(0.0, 1.0);
  for (int avg : {2, 3, 4, 6}) {
    std::vector<double> alpha(64);
    for (auto& a : alpha) a = ln(rng);
    auto t = bit_targets(alpha, avg);
    double bins = 0;
    for (double v : t) bins += std::exp2(v);
    EXPECT_NEAR(bins, 64.0 * std::exp2(avg), 1e-6);  // sum of bins = C 2^M before rounding
    auto b = allocate_bits(alpha, avg, 1, 8);
    int64_t sum = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      sum += b[i];
      EXPECT_GE(b[i], 1);
      EXPECT_LE(b[i], 8);
      for (size_t j = 0; j < b.size(); ++j)
        if (alpha[i] > alpha[j] * 1.0001) {
          EXPECT_GE(b[i], b[j]) << i << " vs " << j;
        }
    }
    EXPECT_EQ(sum, 64 * avg) << "average " << avg;
    EXPECT_GT(*std::max_element(b.begin(), b.end()), *std::min_element(b.begin(), b.end()));
  }
  // equal ranges -> every channel at the average; ranges 1 : 8 -> alpha^(2/3) 1 : 4, bins 6.4 : 25.6 of
  // 2 x 16 -> log2 2.68 / 4.68 -> 3 / 5 bits (sum 8 = 2 x 4 without correction)
  EXPECT_EQ(allocate_bits({1, 1, 1, 1}, 4, 1, 8), (std::vector<int>{4, 4, 4, 4}));
  EXPECT_EQ(allocate_bits({1, 8}, 4, 1, 8), (std::vector<int>{3, 5}));
  // 1 : 8^1.5 -> targets 1.83 / 4.83 round to 2 / 5 (sum 7): the correction loop adds the missing bit
  auto c = allocate_bits({1, std::pow(8.0, 1.5)}, 4, 1, 8);
  EXPECT_EQ(c[0] + c[1], 8);
  EXPECT_THROW(allocate_bits({1, 2}, 9, 1, 8), std::invalid_argument);
  EXPECT_THROW(allocate_bits({1, -2}, 4, 1, 8), std::invalid_argument);
}

// ---------------------------------------------------------------- bias correction
TEST(PtqBiasCorrection, ZeroesThePerChannelMeanErrorAndMatchesTheSpread) {
  torch::manual_seed(11);
  auto w = torch::randn({8, 4, 3, 3}) * 0.1 + torch::linspace(-0.05, 0.08, 8).reshape({8, 1, 1, 1});
  for (auto corr : {quant::Correction::Mean, quant::Correction::MeanVar}) {
    quant::ChannelWeightQuantizer q(quant::QuantSpec::parse("uniform:3"), {}, corr, 8);
    q.eval();
    torch::NoGradGuard ng;
    auto err = [&](const torch::Tensor& out) {
      return (out.reshape({8, -1}).to(torch::kFloat64).mean(1) - w.reshape({8, -1}).to(torch::kFloat64).mean(1))
          .abs()
          .max()
          .item<double>();
    };
    const double before = err(q.forward(w));
    EXPECT_GT(before, 1e-3);
    q.fit_correction(w);
    auto out = q.forward(w);
    EXPECT_LT(err(out), 1e-7) << quant::correction_name(corr);
    if (corr == quant::Correction::MeanVar) {
      auto c = [](const torch::Tensor& t) {
        auto r = t.reshape({8, -1}).to(torch::kFloat64);
        return (r - r.mean(1, true)).norm(2, 1);
      };
      EXPECT_TRUE(torch::allclose(c(out), c(w), 1e-5, 1e-7));
    }
  }
}

// ---------------------------------------------------------------- BN folding
TEST(PtqBnFold, FoldedNetworkComputesTheSameFunction) {
  auto m = make_model("resnet8", ModelConfig{3, 32, 10});
  {
    torch::NoGradGuard ng;
    for (auto& b : m->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.5, 0.5);
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
    }
    for (auto& p : m->named_parameters())
      if (p.key().find("bn") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  m->eval();
  torch::manual_seed(2);
  auto x = torch::randn({4, 3, 32, 32});
  auto before = m->forward(x).detach();
  auto pairs = fold_batchnorm(*m);
  EXPECT_EQ(pairs.size(), 7u);  // conv1 + 3 blocks x 2
  EXPECT_EQ(pairs[0], std::make_pair(std::string("conv1"), std::string("bn1")));
  auto after = m->forward(x).detach();
  EXPECT_TRUE(torch::allclose(before, after, 1e-4, 1e-4)) << (before - after).abs().max().item<double>();
}

// ---------------------------------------------------------------- per-channel bits (policy v2, export)
TEST(PtqChannelBits, QuantizeChannelByChannelAccountAndExportExactly) {
  auto m = lenet();
  Policy p = uniform_policy(*m, quant::QuantSpec::parse("uniform:4"), quant::QuantSpec::parse("uniform:4:asym"));
  p.layers[0].channel_bits = {2, 3, 4, 4, 5, 6};
  p.layers[1].bias_correction = "mean+var";
  p.layers[3].act_channel_bits.assign(120, 4);
  p.layers[3].act_channel_bits[0] = 8;
  p.layers[3].act_channel_bits[1] = 2;
  update_totals(p);
  EXPECT_EQ(policy_required_version(p), 2);
  // conv1: per channel 25 codes + 1 scale
  EXPECT_EQ(p.layers[0].weight_bytes, (50 + 7) / 8 + (75 + 7) / 8 + 2 * ((100 + 7) / 8) + (125 + 7) / 8 +
                                          (150 + 7) / 8 + 6 * 4);
  // conv2: 2400 x 4 bits + 1 scale + 2 x 16 correction floats
  EXPECT_EQ(p.layers[1].weight_bytes, 1200 + 4 + 16 * 8);
  // the round trip keeps the v2 keys
  Policy back = parse_policy(p.dump());
  EXPECT_EQ(back.dump(), p.dump());
  EXPECT_EQ(back.layers[3].act_channel_bits, p.layers[3].act_channel_bits);
  EXPECT_EQ(back.layers[1].bias_correction, "mean+var");

  auto data = ptq_data(64, 9);
  CalibOptions co;
  co.batches = 2;
  co.batch_size = 32;
  convert_model(*m, back, &data, co);
  m->eval();
  auto layers = quant_layers(*m);
  {
    torch::NoGradGuard ng;
    auto w = layers[0].layer->weight_param();
    auto q = layers[0].layer->effective_weight();
    for (int64_t c = 0; c < 6; ++c) {
      auto ref = quant::make_quantizer("uniform:" + std::to_string(back.layers[0].channel_bits[c]), quant::Role::Weight);
      EXPECT_TRUE(torch::equal(q[c], ref->forward(w.narrow(0, c, 1))[0])) << "channel " << c;
      const int64_t levels = std::get<0>(torch::_unique(q[c].flatten())).numel();
      EXPECT_LE(levels, (1 << back.layers[0].channel_bits[c]) - 1);
    }
    EXPECT_LT(ptq::max_channel_mean_error(*layers[1].layer), 1e-6);
  }
  auto dir = tmp_dir("export");
  auto rep = export_model(*m, back, (dir / "m.safetensors").string());
  EXPECT_EQ(rep.weight_bytes, back.totals.weight_bytes);
  auto v = verify_export(*m, back, (dir / "m.safetensors").string());
  EXPECT_TRUE(v.ok) << (v.problems.empty() ? "" : v.problems[0]);

  // errors name the layer and the key
  Policy bad = back;
  bad.layers[3].act_channel_bits.resize(7, 4);
  update_totals(bad);
  try {
    check_policy(bad, *m);
    FAIL() << "expected an error";
  } catch (const PolicyError& e) {
    EXPECT_NE(std::string(e.what()).find("fc2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("act_channel_bits has 7 entries"), std::string::npos) << e.what();
  }
  nlohmann::json j = nlohmann::json::parse(back.dump());
  j["layers"]["conv2"]["bias_correction"] = "median";
  EXPECT_THROW(Policy::from_json(j, "t.json"), PolicyError);
  autoqnn_test::remove_tree(dir.string());
}

// ---------------------------------------------------------------- AFP
TEST(PtqAfp, LevelSetsCostAndSearch) {
  auto q = quant::make_quantizer("afp:4:e=2", quant::Role::Weight);
  q->eval();
  // the reference's example: max|w| = .8, E2M1 -> magnitudes {0, .125, .25, .375, .5, .75, 1, 1.5}
  auto lv = q->levels(torch::tensor({0.8f, -0.3f, 0.1f}));
  auto pos = lv.masked_select(lv.ge(0));
  std::vector<float> got(pos.data_ptr<float>(), pos.data_ptr<float>() + pos.numel());
  EXPECT_EQ(got, (std::vector<float>{0, .125f, .25f, .375f, .5f, .75f, 1.f, 1.5f}));
  EXPECT_EQ(lv.numel(), 15);  // signed, one zero
  EXPECT_DOUBLE_EQ(afp_hw_cost(2, 1), 4 + 1 + 2 + 4);
  EXPECT_DOUBLE_EQ(afp_hw_cost(1, 2), 2 + 2 + 1 + 9);
  EXPECT_DOUBLE_EQ(afp_hw_cost(3, 0), 8 + 0 + 3 + 1);
  torch::manual_seed(4);
  auto g = torch::randn({4000}) * 0.05;
  EXPECT_NEAR(afp_distance(g, g), 0.0, 1e-15);
  EXPECT_GT(afp_distance_at(g, 4, 1), 0.0);
  for (int bits : {4, 5, 6}) {
    auto dist = [&](int e) { return afp_distance_at(g, bits, e); };
    auto ex = afp_exhaustive(bits, dist);
    auto an = afp_anneal(bits, dist, 1);
    EXPECT_EQ(ex.visited.size(), static_cast<size_t>(bits - 1));
    EXPECT_EQ(an.best.E, ex.best.E) << bits << " bits";
    for (const auto& e : ex.visited) EXPECT_LE(ex.best.objective, e.objective);
  }
}

// ---------------------------------------------------------------- sensitivity CSV
TEST(PtqSensitivity, TableAndCsvRoundTrip) {
  auto m = lenet();
  auto data = ptq_data(64, 13);
  SensitivityOptions so;
  so.calib_batches = 1;
  so.batch_size = 64;
  std::vector<std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>>> cands(5);
  for (auto& c : cands) {
    c.emplace_back(quant::QuantSpec::parse("fixed:2"), quant::QuantSpec::parse("fp32"));
    c.emplace_back(quant::QuantSpec::parse("fixed:8"), quant::QuantSpec::parse("fixed:8"));
  }
  double fp = 0;
  auto rows = analyze_sensitivity(*m, cands, data, data, so, &fp);
  ASSERT_EQ(rows.size(), 10u);
  for (size_t i = 0; i < rows.size(); i += 2) EXPECT_GT(rows[i + 1].sqnr_db, rows[i].sqnr_db + 20) << rows[i].layer;
  EXPECT_NEAR(rows[1].drop, fp - rows[1].top1, 1e-12);
  for (const auto& l : quant_layers(*m)) EXPECT_FALSE(l.layer->weight_quantizer());
  auto back = parse_sensitivity_csv(sensitivity_csv(rows), "s.csv");
  ASSERT_EQ(back.size(), rows.size());
  EXPECT_EQ(back[3].weight, rows[3].weight);
  EXPECT_NEAR(back[3].sqnr_db, rows[3].sqnr_db, 1e-6);
  EXPECT_THROW(parse_sensitivity_csv("a,b\n", "s.csv"), std::runtime_error);
}

// Without accuracy (the Hessian / Fisher proxies of `search --method ilp`): the weight error once per weight
// spec, the act error once per act spec, each the same in every row that shares it; more act bits, a
// smaller act error; the direct computation on the layer's calibrated quantizer agrees.
TEST(PtqSensitivity, WithoutAccuracyTheActErrorIsMeasuredPerActSpec) {
  auto m = lenet();
  auto data = ptq_data(64, 13);
  SensitivityOptions so;
  so.calib_batches = 1;
  so.batch_size = 64;
  so.accuracy = false;
  std::vector<std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>>> cands(5);
  for (auto& c : cands)
    for (const char* w : {"fixed:2", "fixed:4"})
      for (const char* a : {"fp32", "uniform:2", "uniform:4", "uniform:8"})
        c.emplace_back(quant::QuantSpec::parse(w), quant::QuantSpec::parse(a));
  auto rows = analyze_sensitivity(*m, cands, data, data, so);
  ASSERT_EQ(rows.size(), 40u);
  for (size_t l = 0; l < 5; ++l) {
    const SensitivityRow* r = &rows[8 * l];
    EXPECT_EQ(r[0].act_mse, 0.0) << r[0].layer;  // fp32
    EXPECT_GT(r[1].act_mse, 3 * r[2].act_mse) << r[0].layer;  // 2 -> 4 bits
    EXPECT_GT(r[2].act_mse, 10 * r[3].act_mse) << r[0].layer;  // 4 -> 8 bits
    EXPECT_GT(r[3].act_mse, 0.0) << r[0].layer;
    for (int k = 0; k < 4; ++k) {
      EXPECT_EQ(r[k].act_mse, r[4 + k].act_mse) << r[0].layer;  // the same act spec under another weight
      EXPECT_EQ(r[k].mse, r[0].mse) << r[0].layer;                 // the same weight spec
      EXPECT_EQ(r[k].top1, 0.0);
    }
    EXPECT_GT(r[0].mse, r[4].mse) << r[0].layer;
  }
  // conv2's uniform:2 error, directly: its quantizer calibrated alone, then (Q(a) - a)^2 on the first batch
  auto m2 = lenet();
  auto layers = quant_layers(*m2);
  auto aq = quant::make_quantizer(quant::QuantSpec::parse("uniform:2"), quant::Role::Activation);
  layers[1].layer->set_act_quantizer(aq);
  CalibOptions co;
  co.batches = 1;
  co.batch_size = 64;
  calibrate_model(*m2, data, co);
  ptq::StatsOptions st;
  st.batches = 1;
  st.batch_size = 64;
  st.keep_inputs = 64;
  layers[1].layer->set_act_quantizer(nullptr);
  auto a = ptq::collect_act_stats(*m2, data.head(64), st).at("conv2").input;
  torch::NoGradGuard ng;
  aq->eval();
  const double direct = (aq->forward(a) - a).to(torch::kFloat64).pow(2).mean().item<double>();
  EXPECT_NEAR(rows[8 + 1].act_mse, direct, 1e-6 * direct);
  for (const auto& l : quant_layers(*m)) EXPECT_FALSE(l.layer->act_quantizer());
}

// ---------------------------------------------------------------- ACIQ guard
TEST(PtqAciqGuard, EveryLayerKeepsTheRangeWithTheLowerOutputError) {
  auto data = ptq_data(128, 21);
  PtqOptions o;
  o.weight = quant::QuantSpec::parse("uniform:4:per_channel");
  o.act = quant::QuantSpec::parse("uniform:3:asym");
  o.aciq = "gauss";
  o.calib_batches = 2;
  o.batch_size = 64;
  auto m = lenet();
  auto r = run_ptq(*m, data, o);
  // the probe rows run_ptq used: the FP model's inputs on the same calibration batches
  auto fp = lenet();
  ptq::StatsOptions so;
  so.batches = o.calib_batches;
  so.batch_size = o.batch_size;
  so.seed = o.seed;
  so.keep_inputs = o.guard_rows;
  auto probe = collect_act_stats(*fp, data, so);
  auto run = [](NamedQuantLayer& nl, const torch::Tensor& x) {
    if (auto* c = dynamic_cast<QuantConv2dImpl*>(nl.layer)) return c->forward(x);
    return dynamic_cast<QuantLinearImpl*>(nl.layer)->forward(x);
  };
  int n = 0, minmax = 0;
  for (auto& nl : quant_layers(*m)) {
    const auto& rep = r.layers[nl.name];
    if (!rep.contains("guard_output_mse")) continue;
    ++n;
    const double ea = rep["guard_output_mse"]["aciq"], em = rep["guard_output_mse"]["minmax"];
    EXPECT_EQ(rep["clip_choice"], ea > em ? "minmax" : "aciq") << nl.name;
    minmax += ea > em;
    // the installed range really is the chosen one: the probe error now is min(aciq, minmax)
    torch::NoGradGuard ng;
    const auto& x = probe.at(nl.name).input;
    ASSERT_EQ(x.size(0), std::min<int64_t>(o.guard_rows, o.batch_size));
    auto aq = nl.layer->act_quantizer();
    nl.layer->set_act_quantizer(nullptr);
    auto ref = run(nl, x);
    nl.layer->set_act_quantizer(aq);
    EXPECT_NEAR((run(nl, x) - ref).pow(2).mean().item<double>(), std::min(ea, em), 1e-6 * std::max(ea, em) + 1e-12)
        << nl.name;
  }
  EXPECT_EQ(n, 5);  // every layer has a uniform act quantizer
  EXPECT_TRUE(r.policy.search["aciq_guard"].get<bool>());
  EXPECT_EQ(r.policy.search["aciq_minmax_layers"].get<int>(), minmax);
  // the guard never ends above plain ACIQ: per layer the kept error is min(aciq, minmax); and without the
  // guard the ACIQ clip stays everywhere
  o.aciq_guard = false;
  auto m2 = lenet();
  auto r2 = run_ptq(*m2, data, o);
  for (const auto& kv : r2.layers.items()) EXPECT_FALSE(kv.value().contains("clip_choice")) << kv.key();
  EXPECT_FALSE(r2.policy.search["aciq_guard"].get<bool>());
}

// ---------------------------------------------------------------- end to end
TEST(PtqPipeline, AllMethodsTogetherGiveAValidV2PolicyAndCheckpointState) {
  auto m = lenet();
  auto data = ptq_data(128, 17);
  PtqOptions o;
  o.weight = quant::QuantSpec::parse("uniform:4:per_channel");
  o.act = quant::QuantSpec::parse("uniform:4:asym");
  o.aciq = "laplace";
  o.alloc_weights = o.alloc_acts = true;
  o.bias_correction = "mean";
  o.fold_bn = true;
  o.calib_batches = 2;
  o.batch_size = 64;
  auto r = run_ptq(*m, data, o);
  EXPECT_EQ(r.folded.size(), 2u);
  EXPECT_EQ(policy_required_version(r.policy), 2);
  check_policy(r.policy, *m);
  for (const auto& l : r.policy.layers) {
    EXPECT_EQ(l.bias_correction, "mean");
    if (!l.channel_bits.empty()) {
      double s = 0;
      for (int b : l.channel_bits) s += b;
      EXPECT_DOUBLE_EQ(s / l.channel_bits.size(), 4.0) << l.name;
    }
    if (!l.act_channel_bits.empty()) {
      double s = 0;
      for (int b : l.act_channel_bits) s += b;
      EXPECT_DOUBLE_EQ(s / l.act_channel_bits.size(), 4.0) << l.name;
    }
  }
  // ACIQ on fc2 (after a ReLU): per-channel [0, clip] ranges below the observed maxima
  auto layers = quant_layers(*m);
  auto cq = std::dynamic_pointer_cast<quant::ChannelActQuantizer>(layers[3].layer->act_quantizer());
  ASSERT_TRUE(cq);
  ASSERT_TRUE(r.layers["fc2"].contains("clip_range"));
  auto bufs = cq->channels()[0]->named_buffers(false);
  EXPECT_EQ(bufs.find("min")->item<float>(), 0.0f);
  EXPECT_GT(bufs.find("max")->item<float>(), 0.0f);
  // naive vs full: both run; invalid combinations are refused with the option named
  PtqOptions bad = o;
  bad.act = quant::QuantSpec::parse("fixed:4");
  try {
    validate(bad);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--aciq"), std::string::npos);
  }
  EXPECT_THROW(parse_bit_alloc("weights,bias"), std::invalid_argument);
  EXPECT_EQ(parse_bit_alloc("weights,acts"), std::make_pair(true, true));
}
