// Policy JSON: round trip, schema, totals, validation errors, apply / calibrate; the JSON-Schema validator.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "autoqnn/convert.h"
#include "autoqnn/data.h"
#include "autoqnn/json_schema.h"
#include "quantizers/channel_quant.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "quantizers/registry.h"
#include "../src/cli/policy_table.h"  // the table is the CLI's (autoqnn policy show)

namespace fs = std::filesystem;
using namespace autoqnn;
using autoqnn::cli::format_policy_table;
using nlohmann::json;
using quant::QuantSpec;

namespace {

std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path d = fs::path(AUTOQNN_TEST_TMP) / ("policy_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
  autoqnn_test::remove_tree(fs::path(d).string());
  fs::create_directories(d);
  return d.string();
}

const JsonSchema& policy_schema() {
  static const JsonSchema s = JsonSchema::load(std::string(AUTOQNN_SOURCE_DIR) + "/configs/policy.schema.json");
  return s;
}

ModelPtr lenet() {
  torch::manual_seed(0);
  return make_model("lenet5", ModelConfig{1, 28, 10});
}

Policy uniform(Model& m, const std::string& w, const std::string& a = "fp32", int keep = 0) {
  return uniform_policy(m, QuantSpec::parse(w), QuantSpec::parse(a), keep);
}

// Expects `fn` to throw an exception whose message contains every one of `needles`.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning " << *needles.begin();
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

// The weight specs that every scheme accepts at the bits the results table uses.
std::vector<std::string> weight_specs() {
  std::vector<std::string> out;
  for (const auto& t : quant::scheme_table()) {
    if (!t.weight_ok) continue;
    for (int b : quant::valid_bits(QuantSpec::parse(t.name), quant::Role::Weight))
      if (b == 1 || b == 2 || b == 3 || b == 4 || b == 8) out.push_back(std::string(t.name) + ":" + std::to_string(b));
  }
  return out;
}

}  // namespace

TEST(Policy, LeNetFactsAndTotalsByHand) {
  auto m = lenet();
  Policy p = uniform(*m, "fixed:4", "fixed:8");
  ASSERT_EQ(p.layers.size(), 5u);
  const std::vector<std::string> names = {"conv1", "conv2", "fc1", "fc2", "fc3"};
  const std::vector<int64_t> params = {150, 2400, 48000, 10080, 840};
  const std::vector<int64_t> macs = {117600, 240000, 48000, 10080, 840};
  const std::vector<int64_t> act = {784, 1176, 400, 120, 84};
  int64_t bytes = 0;
  double bops = 0;
  for (size_t i = 0; i < 5; ++i) {
    const auto& l = p.layers[i];
    EXPECT_EQ(l.name, names[i]);
    EXPECT_EQ(l.params, params[i]);
    EXPECT_EQ(l.macs, macs[i]);
    EXPECT_EQ(l.act_numel, act[i]);
    EXPECT_EQ(l.weight.to_string(), "fixed:4");
    EXPECT_EQ(l.act_bits, 8);
    // fixed: 4-bit codes bit-packed + one float32 power-of-two scale
    EXPECT_EQ(l.weight_bytes, (params[i] * 4 + 7) / 8 + 4) << l.name;
    EXPECT_DOUBLE_EQ(l.weight_bits, 8.0 * l.weight_bytes / params[i]);
    bytes += l.weight_bytes;
    bops += double(macs[i]) * 4 * 8;
  }
  EXPECT_EQ(bytes, 79 + 1204 + 24004 + 5044 + 424);
  EXPECT_EQ(p.totals.weight_bytes, bytes);
  EXPECT_EQ(p.totals.params, 61470);
  EXPECT_EQ(p.totals.fp32_weight_bytes, 4 * 61470);
  EXPECT_DOUBLE_EQ(p.totals.avg_weight_bits, 8.0 * bytes / 61470);
  EXPECT_EQ(p.totals.act_bytes, 1176);  // conv2's input at 8 bits
  EXPECT_DOUBLE_EQ(p.totals.bops, bops);
  EXPECT_EQ(p.model, "lenet5");
  EXPECT_EQ(p.fingerprint, model_fingerprint(*m));

  Policy fp = blank_policy(*m);
  EXPECT_EQ(fp.totals.weight_bytes, 4 * 61470);
  EXPECT_DOUBLE_EQ(fp.totals.avg_weight_bits, 32.0);
  EXPECT_EQ(fp.totals.act_bytes, 1176 * 4);
  EXPECT_DOUBLE_EQ(fp.totals.bops, 416520.0 * 32 * 32);
}

TEST(Policy, KeepFirstLastIsExplicit) {
  auto m = lenet();
  Policy p = uniform(*m, "esb:3:k=1", "uniform:4", 8);
  EXPECT_EQ(p.layers.front().weight.to_string(), "fixed:8");
  EXPECT_EQ(p.layers.front().act.to_string(), "fixed:8");
  EXPECT_EQ(p.layers.back().weight.to_string(), "fixed:8");
  EXPECT_EQ(p.layers[1].weight.to_string(), "esb:3:k=1");
  EXPECT_EQ(p.layers[1].act.to_string(), "uniform:4");
  Policy q = uniform(*m, "esb:3:k=1", "fp32", 8);
  EXPECT_TRUE(q.layers.front().act.is_fp());  // fp32 activations stay fp32
  Policy none = uniform(*m, "esb:3:k=1");
  for (const auto& l : none.layers) EXPECT_EQ(l.weight.to_string(), "esb:3:k=1");  // no hidden first/last rule
}

TEST(Policy, RoundTripIsByteIdenticalAndSchemaValid) {
  const std::string dir = test_dir();
  for (const char* model : {"lenet5", "resnet8", "mobilenetv2"}) {
    torch::manual_seed(0);
    auto m = make_model(model, std::string(model) == "lenet5" ? ModelConfig{1, 28, 10} : ModelConfig{3, 32, 10});
    std::vector<Policy> ps = {blank_policy(*m), uniform(*m, "fixed:4", "fixed:8", 8), uniform(*m, "esb:4:k=1"),
                              uniform(*m, "uniform:8:per_channel", "uniform:8:asym")};
    Policy mixed = uniform(*m, "fixed:8");
    mixed.layers[1].weight = QuantSpec::parse("twn");
    mixed.layers[1].act = QuantSpec::parse("pact:4");
    mixed.layers.back().weight = QuantSpec::parse("fp32");
    mixed.search = {{"method", "qss"}, {"seed", 7}, {"budget", {{"weight_bytes", 12345}}},
                    {"probabilities", {{"conv1", {{{"weight", "fixed:4"}, {"act", "fp32"}, {"p", 0.25}},
                                                  {{"weight", "esb:4:k=1"}, {"act", "fp32"}, {"p", 0.75}}}}}},
                    {"space", "configs/search_space/x.json"},
                    {"command", "autoqnn search --model x"}, {"version", AUTOQNN_VERSION}};
    update_totals(mixed);
    EXPECT_EQ(mixed.layers[1].weight.to_string(), "twn:2");  // canonical: default bits filled in
    ps.push_back(mixed);
    for (const auto& p : ps) {
      const std::string path = dir + "/" + model + ".json";
      save_policy(path, p);
      const std::string a = read_text_file(path);
      EXPECT_EQ(a, p.dump());
      Policy back = load_policy(path);
      save_policy(path, back);
      EXPECT_EQ(read_text_file(path), a) << model;  // write -> read -> write is byte-identical
      // the sorted-key form (checkpoint metadata) reads back to the same policy
      EXPECT_EQ(Policy::from_json(p.to_json()).dump(), a);
      auto v = policy_schema().validate(json::parse(a));
      EXPECT_TRUE(v.empty()) << model << ": " << (v.empty() ? "" : v[0].path + " " + v[0].message);
      check_policy(back, *m);
    }
  }
}

TEST(Policy, EveryWeightSchemePolicyIsSchemaValid) {
  auto m = lenet();
  auto specs = weight_specs();
  ASSERT_GE(specs.size(), 30u);
  for (const auto& s : specs) {
    Policy p = uniform(*m, s);
    auto v = policy_schema().validate(json::parse(p.dump()));
    EXPECT_TRUE(v.empty()) << s << ": " << (v.empty() ? "" : v[0].path + " " + v[0].message);
    EXPECT_EQ(parse_policy(p.dump()).dump(), p.dump()) << s;
    // the policy's bytes are the storage the scheme reports for each weight
    for (const auto& l : p.layers)
      EXPECT_EQ(l.weight_bytes, quant::storage_cost(l.weight, l.shape).bytes()) << s << " " << l.name;
  }
}

TEST(Policy, MalformedJsonNamesLineAndColumn) {
  expect_error([] { parse_policy("{\n  \"format_version\": 1,\n  \"model\": {,\n}", "p.json"); },
               {"p.json:3:13", "line 3", "column 13", "malformed JSON"});
  expect_error([] { parse_policy("", "empty.json"); }, {"empty.json:1:1", "malformed JSON"});
  expect_error([] { load_policy("/nonexistent/dir/p.json"); }, {"/nonexistent/dir/p.json", "does not exist"});
}

TEST(Policy, StructuralErrorsNameTheKey) {
  auto m = lenet();
  const json good = json::parse(uniform(*m, "fixed:4").dump());
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = good;
    edit(j);
    return j;
  };
  auto fails = [](const json& j, std::initializer_list<std::string> needles) {
    expect_error([&] { Policy::from_json(j, "p.json"); }, needles);
  };
  fails(with([](json& j) { j["layers"]["conv2"]["weight"] = "nosuch:4"; }),
        {"p.json", "layers.conv2.weight", "unknown quantizer scheme 'nosuch'", "esb"});
  fails(with([](json& j) { j["layers"]["fc1"]["weight"] = "fixed:40"; }), {"layers.fc1.weight", "out of range"});
  fails(with([](json& j) { j["layers"]["fc1"]["weight"] = "esb:9"; }), {"layers.fc1.weight", "9 bits out of range"});
  fails(with([](json& j) { j["layers"]["fc1"]["act"] = "esb:4"; }), {"layers.fc1.act", "no activation variant"});
  fails(with([](json& j) { j["layers"]["fc1"]["weight"] = "pact:4"; }), {"layers.fc1.weight", "activations only"});
  fails(with([](json& j) { j["layers"]["fc1"]["weight"] = "fixed:4:bogus=1"; }), {"layers.fc1.weight", "bogus"});
  fails(with([](json& j) { j["layers"]["conv1"].erase("weight"); }), {"layers.conv1", "missing required key 'weight'"});
  fails(with([](json& j) { j["layers"]["conv1"]["colour"] = 1; }), {"layers.conv1.colour", "unknown key"});
  fails(with([](json& j) { j["layers"]["conv1"]["params"] = "150"; }), {"layers.conv1.params", "expected an integer"});
  fails(with([](json& j) { j["layers"]["conv1"]["index"] = 3; }), {"index"});
  fails(with([](json& j) { j["layers"]["conv1"]["channel_bits"] = {4, 4, 4, 4, 4, 4}; }),
        {"layers.conv1.channel_bits", "format_version 2"});
  fails(with([](json& j) { j["format_version"] = 3; }), {"format_version", "newer"});
  fails(with([](json& j) { j.erase("totals"); }), {"missing required key 'totals'"});
  fails(with([](json& j) { j["extra"] = 1; }), {"extra", "unknown key"});
  fails(with([](json& j) { j["model"]["input"] = {1, 28}; }), {"model.input"});
  fails(with([](json& j) { j["layers"] = json::object(); }), {"layers", "no layers"});
  fails(json::array(), {"expected an object"});
}

TEST(Policy, CheckAgainstModelNamesTheLayer) {
  auto m = lenet();
  Policy good = uniform(*m, "fixed:4");
  check_policy(good, *m);

  Policy unknown = good;
  unknown.layers[2].name = "fc9";
  expect_error([&] { check_policy(unknown, *m); }, {"unknown layer 'fc9'", "conv1, conv2, fc1, fc2, fc3"});

  Policy missing = good;
  missing.layers.pop_back();
  expect_error([&] { check_policy(missing, *m); }, {"fc3", "missing from the policy"});

  torch::manual_seed(0);
  auto r8 = make_model("resnet8", ModelConfig{3, 32, 10});
  Policy other = uniform(*r8, "fixed:4");
  expect_error([&] { check_policy(other, *m); }, {"written for model 'resnet8'", "not 'lenet5'"});

  // the same model built for 3-channel 32x32 inputs: conv1's shape differs
  auto m3 = make_model("lenet5", ModelConfig{3, 32, 10});
  Policy for3 = uniform(*m3, "fixed:4");
  expect_error([&] { check_policy(for3, *m); }, {"layer 'conv1'", "6x3x5x5", "6x1x5x5"});

  Policy fp = good;
  fp.fingerprint = "fnv1a64:0000000000000000";
  expect_error([&] { check_policy(fp, *m); }, {"fingerprint"});

  Policy edited = good;  // spec changed by hand, facts left stale
  edited.layers[1].weight = QuantSpec::parse("fixed:8");
  expect_error([&] { check_policy(edited, *m); }, {"layer 'conv2'", "weight_bytes 1204", "1204"});

  Policy tot = good;
  tot.totals.weight_bytes += 1;
  expect_error([&] { check_policy(tot, *m); }, {"totals.weight_bytes"});

  Policy esb = good;  // a scheme-specific parameter error surfaces when the quantizer is built
  esb.layers[0].weight = QuantSpec::parse("esb:3:k=5");
  expect_error([&] { update_totals(esb); }, {"layer 'conv1'", "esb:3:k=5"});
}

TEST(Policy, ApplyInstallsQuantizersAndFp32StaysFloat) {
  auto m = lenet();
  Policy p = uniform(*m, "uniform:4", "uniform:8");
  p.layers.back().weight = QuantSpec::parse("fp32");
  p.layers.back().act = QuantSpec::parse("fp32");
  update_totals(p);
  apply_policy(*m, p);
  auto layers = quant_layers(*m);
  for (size_t i = 0; i + 1 < layers.size(); ++i) {
    ASSERT_TRUE(layers[i].layer->weight_quantizer()) << layers[i].name;
    EXPECT_EQ(layers[i].layer->weight_quantizer()->describe(), "uniform:4");
    EXPECT_EQ(layers[i].layer->act_quantizer()->describe(), "uniform:8");
  }
  EXPECT_FALSE(layers.back().layer->weight_quantizer());
  EXPECT_FALSE(layers.back().layer->act_quantizer());
  // weights on the 4-bit grid: at most 15 distinct values per layer
  torch::NoGradGuard ng;
  m->eval();
  auto w = layers[1].layer->effective_weight();
  EXPECT_LE(std::get<0>(torch::_unique(w.flatten())).numel(), 15);
  EXPECT_FALSE(torch::equal(w, layers[1].layer->weight_param()));
  EXPECT_TRUE(torch::equal(layers.back().layer->effective_weight(), layers.back().layer->weight_param()));
  // re-applying a policy replaces the quantizers (no duplicate submodules)
  apply_policy(*m, blank_policy(*m));
  for (const auto& l : quant_layers(*m)) EXPECT_FALSE(l.layer->weight_quantizer());
  for (const auto& kv : m->named_parameters()) EXPECT_EQ(kv.key().find(".wq."), std::string::npos) << kv.key();
}

TEST(Policy, ChannelBitsNeedVersion2AndAreInstalledByApply) {
  auto m = lenet();
  Policy p = uniform(*m, "fixed:4");
  p.layers[0].channel_bits = {2, 2, 4, 4, 8, 8};
  update_totals(p);
  EXPECT_EQ(policy_required_version(p), 2);
  // conv1 per channel: 25 weights each -> 2 bits: 7 + 4, 4 bits: 13 + 4, 8 bits: 25 + 4
  EXPECT_EQ(p.layers[0].weight_bytes, 2 * (7 + 4) + 2 * (13 + 4) + 2 * (25 + 4));
  const std::string text = p.dump();
  EXPECT_NE(text.find("\"format_version\": 2"), std::string::npos);
  Policy back = parse_policy(text);
  EXPECT_EQ(back.layers[0].channel_bits, p.layers[0].channel_bits);
  EXPECT_EQ(back.dump(), text);
  EXPECT_TRUE(policy_schema().validate(json::parse(text)).empty());
  check_policy(back, *m);
  apply_policy(*m, back);  // per-channel bits are real since the PTQ work (docs/ptq.md)
  auto cw = std::dynamic_pointer_cast<quant::ChannelWeightQuantizer>(quant_layers(*m)[0].layer->weight_quantizer());
  ASSERT_TRUE(cw);
  EXPECT_EQ(cw->channel_bits(), p.layers[0].channel_bits);
  p.layers[0].channel_bits = {4, 4};
  update_totals(p);
  expect_error([&] { check_policy(p, *m); }, {"conv1", "channel_bits has 2 entries", "6 output channels"});
}

TEST(Policy, TableListsLayersAndTotals) {
  auto m = lenet();
  Policy p = uniform(*m, "fixed:4");
  const std::string t = format_policy_table(p);
  for (const char* s : {"conv1", "conv2", "fc1", "fc2", "fc3", "fixed:4", "6x1x5x5", "30755", "totals", "245880"})
    EXPECT_NE(t.find(s), std::string::npos) << s << "\n" << t;
}

TEST(Policy, SaveIsAtomic) {
  const std::string dir = test_dir();
  auto m = lenet();
  Policy p = uniform(*m, "fixed:4");
  fs::create_directories(dir + "/taken/sub");  // the target is a non-empty directory: rename must fail
  EXPECT_THROW(save_policy(dir + "/taken", p), std::exception);
  EXPECT_TRUE(fs::is_directory(dir + "/taken/sub"));
  autoqnn_test::remove_tree(fs::path(dir + "/taken").string());
  save_policy(dir + "/p.json", p);
  EXPECT_EQ(load_policy(dir + "/p.json").dump(), p.dump());
  for (const auto& n : autoqnn_test::list_dir(dir)) EXPECT_EQ(n, "p.json");  // no temp left
}

TEST(Convert, CalibrationLeavesBatchNormAndSetsActivationStats) {
  auto m = lenet();
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = 512;
  d.test_limit = 64;
  auto splits = load_splits(d);
  m->train();
  std::map<std::string, torch::Tensor> before;
  for (const auto& b : m->named_buffers()) before[b.key()] = b.value().clone();
  Policy p = uniform(*m, "fixed:4", "fixed:8");
  CalibOptions co;
  co.batches = 3;
  co.batch_size = 64;
  auto st = convert_model(*m, p, &splits.full_train, co);
  EXPECT_EQ(st.batches, 3);
  EXPECT_EQ(st.images, 192);
  EXPECT_EQ(st.weight_quantizers, 5);
  EXPECT_EQ(st.act_quantizers, 5);
  EXPECT_TRUE(m->is_training());  // flags restored
  for (const auto& b : m->named_buffers()) {
    if (before.count(b.key())) {
      EXPECT_TRUE(torch::equal(before[b.key()], b.value())) << b.key() << " changed by calibration";
    } else {
      EXPECT_NE(b.key().find(".aq."), std::string::npos) << b.key();
    }
  }
  // every activation quantizer has a running statistic now (its *_init flag is set)
  int inited = 0;
  for (const auto& b : m->named_buffers())
    if (b.key().find(".aq.") != std::string::npos && b.key().size() > 5 &&
        b.key().compare(b.key().size() - 5, 5, "_init") == 0)
      inited += b.value().item<float>() != 0;
  EXPECT_EQ(inited, 5);
  // the slots hold the policy's quantizers again (the calibration hooks are gone)
  for (const auto& l : quant_layers(*m)) EXPECT_EQ(l.layer->act_quantizer()->describe(), "fixed:8");
  // calibration is deterministic
  auto m2 = lenet();
  m2->train();
  convert_model(*m2, p, &splits.full_train, co);
  for (const auto& b : m2->named_buffers()) EXPECT_TRUE(torch::equal(b.value(), m->named_buffers()[b.key()])) << b.key();
  auto meta = quantized_meta(*m, p, "synthetic", 0);
  EXPECT_EQ(meta.kind, "quantized");
  EXPECT_EQ(Policy::from_json(meta.policy).dump(), p.dump());
}

// ---------------------------------------------------------------- the JSON-Schema validator
TEST(JsonSchemaValidator, Keywords) {
  JsonSchema s(json::parse(R"({
    "type": "object", "required": ["a", "b"], "additionalProperties": false,
    "properties": {
      "a": {"type": "integer", "minimum": 1, "maximum": 3},
      "b": {"type": "string", "pattern": "^x[0-9]+$"},
      "c": {"enum": ["p", "q"]},
      "d": {"type": "array", "items": {"$ref": "#/definitions/pos"}, "minItems": 1, "maxItems": 2},
      "e": {"const": 5},
      "f": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
      "g": {"anyOf": [{"type": "string"}, {"type": "integer", "exclusiveMinimum": 0}]},
      "h": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}}
    },
    "definitions": {"pos": {"type": "number", "exclusiveMinimum": 0}}
  })"));
  EXPECT_TRUE(s.validate(json::parse(R"({"a": 2, "b": "x12", "c": "q", "d": [1.5], "e": 5, "f": null, "g": 3})")).empty());
  EXPECT_TRUE(s.validate(json::parse(R"({"a": 2.0, "b": "x1", "f": {"k": 1.5}, "g": "s", "h": {"ab": 1}})")).empty());
  auto first = [&](const char* doc) {
    auto v = s.validate(json::parse(doc));
    return v.empty() ? std::string("(valid)") : v[0].path + ": " + v[0].message;
  };
  EXPECT_NE(first(R"({"a": 2})").find("missing required property 'b'"), std::string::npos);
  EXPECT_NE(first(R"({"a": 0, "b": "x1"})").find("/a: 0 < minimum 1"), std::string::npos);
  EXPECT_NE(first(R"({"a": 4, "b": "x1"})").find("maximum"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1.5, "b": "x1"})").find("expected type integer"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "y1"})").find("/b: \"y1\" does not match pattern"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "c": "r"})").find("/c: \"r\" is not one of"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "d": [0]})").find("/d/0: 0 <= exclusiveMinimum 0"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "d": []})").find("fewer than minItems"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "d": [1, 2, 3]})").find("more than maxItems"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "e": 6})").find("/e: must be 5"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "f": {"k": "s"}})").find("/f/k: expected type number"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "g": -1})").find("anyOf"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "h": {"A": 1}})").find("property name 'A'"), std::string::npos);
  EXPECT_NE(first(R"({"a": 1, "b": "x1", "z": 1})").find("unknown property 'z'"), std::string::npos);
  EXPECT_EQ(s.validate(json::parse(R"({"a": 9, "b": 1, "z": 1})")).size(), 3u);  // every violation is reported
  expect_error([&] { s.check(json::parse(R"({"a": 9, "b": "x1"})"), "doc.json"); }, {"doc.json", "/a", "maximum"});
}

TEST(JsonSchemaValidator, RejectsWhatItCannotCheck) {
  expect_error([] { JsonSchema(json::parse(R"({"oneOf": []})")); }, {"unsupported keyword 'oneOf'"});
  expect_error([] { JsonSchema(json::parse(R"({"type": "int"})")); }, {"unknown type"});
  expect_error([] { JsonSchema(json::parse(R"({"pattern": "(["})")); }, {"invalid regular expression"});
  expect_error([] { JsonSchema(json::parse(R"({"$ref": "#/definitions/x"})")); }, {"points to nothing"});
  expect_error([] { JsonSchema(json::parse(R"({"$ref": "other.json#/x"})")); }, {"only local references"});
  expect_error([] { JsonSchema::load("/nonexistent.schema.json"); }, {"/nonexistent.schema.json"});
}

TEST(JsonSchemaValidator, PolicySchemaCatchesBadPolicies) {
  auto m = lenet();
  json j = json::parse(uniform(*m, "fixed:4").dump());
  EXPECT_TRUE(policy_schema().validate(j).empty());
  json bad = j;
  bad["layers"]["conv1"]["weight"] = "fixed 4";
  bad["layers"]["fc1"]["kind"] = "lstm";
  bad["totals"].erase("bops");
  bad["layers"]["fc2"]["act_bits"] = 64;
  auto v = policy_schema().validate(bad);
  ASSERT_EQ(v.size(), 4u);
  std::string all;
  for (const auto& x : v) all += x.path + " " + x.message + "\n";
  for (const char* s : {"/layers/conv1/weight", "/layers/fc1/kind", "/totals", "bops", "/layers/fc2/act_bits"})
    EXPECT_NE(all.find(s), std::string::npos) << s << "\n" << all;
}

// SAT's unscaled levels need the variance rescale where no BatchNorm follows: policy uniform adds it there.
TEST(Policy, UniformSatRescalesLayersWithoutBatchNorm) {
  torch::manual_seed(0);
  auto m = make_model("resnet8", ModelConfig{1, 28, 10});
  Policy p = uniform_policy(*m, quant::QuantSpec::parse("sat:3"), quant::QuantSpec::parse("fp32"));
  int rescaled = 0;
  for (const auto& l : p.layers) {
    const bool is_fc = l.name == "fc";
    EXPECT_EQ(l.weight.has("rescale"), is_fc) << l.name << " " << l.weight.to_string();
    rescaled += l.weight.has("rescale");
  }
  EXPECT_EQ(rescaled, 1);
  // an explicit :rescale is kept everywhere
  Policy q = uniform_policy(*m, quant::QuantSpec::parse("sat:3:rescale"), quant::QuantSpec::parse("fp32"));
  for (const auto& l : q.layers) EXPECT_TRUE(l.weight.has("rescale")) << l.name;
}
