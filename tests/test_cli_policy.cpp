// The built `autoqnn` binary: policy uniform/show/check, convert, finetune, eval --policy, export --verify,
// and every bad input of the policy workflow (exit code, message naming the key / layer, no output file
// created or replaced).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/export.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"

namespace fs = std::filesystem;
using namespace autoqnn;
using nlohmann::json;

namespace {

using Result = autoqnn_test::CliResult;
using autoqnn_test::run_cli;

// Shared fixture files: FP32 checkpoints of lenet5 and resnet8 (untrained, saved in-process), a policy.
struct Files {
  std::string dir, fp, r8, policy, r8_policy;
};

const Files& files() {
  static Files f = [] {
    Files f;
    f.dir = (fs::path(AUTOQNN_TEST_TMP) / ("cli_policy_" + std::to_string(::getpid()))).string();
    autoqnn_test::remove_tree(fs::path(f.dir).string());
    fs::create_directories(f.dir);
    const ModelConfig cfg{1, 28, 10};
    for (const auto& [name, path] : {std::pair<std::string, std::string>{"lenet5", f.dir + "/fp.pt"},
                                     std::pair<std::string, std::string>{"resnet8", f.dir + "/r8.pt"}}) {
      torch::manual_seed(0);
      auto m = make_model(name, cfg);
      CheckpointMeta meta;
      meta.model = name;
      meta.config = cfg;
      meta.dataset = "synthetic";
      save_checkpoint(path, *m, meta);
    }
    f.fp = f.dir + "/fp.pt";
    f.r8 = f.dir + "/r8.pt";
    f.policy = f.dir + "/p.json";
    f.r8_policy = f.dir + "/r8.json";
    torch::manual_seed(0);
    auto m = make_model("lenet5", cfg);
    save_policy(f.policy, uniform_policy(*m, quant::QuantSpec::parse("fixed:4"), quant::QuantSpec::parse("fixed:8"), 8));
    auto r = make_model("resnet8", cfg);
    save_policy(f.r8_policy, uniform_policy(*r, quant::QuantSpec::parse("fixed:4"), quant::QuantSpec::parse("fp32")));
    return f;
  }();
  return f;
}

const std::string kData = " --dataset synthetic --train-limit 256 --test-limit 64 --batch-size 64 --threads 1 ";

void expect_failure(const Result& r, std::initializer_list<std::string> needles) {
  EXPECT_NE(r.rc, 0) << r.out;
  for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "'" << n << "' not in:\n" << r.out;
}

// A policy file derived from the good one by editing its JSON.
std::string edited_policy(const std::string& name, const std::function<void(json&)>& edit) {
  json j = json::parse(read_text_file(files().policy));
  edit(j);
  const std::string path = files().dir + "/" + name + ".json";
  std::ofstream(path) << j.dump(2);
  return path;
}

std::string sentinel(const std::string& name) {
  const std::string path = files().dir + "/" + name;
  std::ofstream(path) << "sentinel";
  return path;
}

}  // namespace

TEST(CliPolicy, UniformShowCheck) {
  const auto& f = files();
  const std::string out = f.dir + "/u.json";
  auto r = run_cli("policy uniform --model lenet5 --weight esb:4:k=1 --act uniform:8 --keep-first-last 8 --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  Policy p = load_policy(out);
  EXPECT_EQ(p.layers[0].weight.to_string(), "fixed:8");
  EXPECT_EQ(p.layers[1].weight.to_string(), "esb:4:k=1");
  EXPECT_EQ(p.layers[1].act.to_string(), "uniform:8");
  r = run_cli("policy show " + out, false);
  ASSERT_EQ(r.rc, 0) << r.out;
  // std::string elements: a c_str() of a temporary would dangle inside the loop (ASan)
  for (const std::string& s : std::vector<std::string>{"conv1", "fc3", "esb:4:k=1", "fixed:8", "totals",
                                                       std::to_string(p.totals.weight_bytes)})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  r = run_cli("policy show --json " + out, false);
  EXPECT_EQ(r.out, read_text_file(out));
  r = run_cli("policy check --model lenet5 " + out, false);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("OK"), std::string::npos);
  EXPECT_NE(r.out.find("schema valid"), std::string::npos);
}

TEST(CliPolicy, UniformBadSpecsWriteNothing) {
  const auto& f = files();
  const std::string out = f.dir + "/never.json";
  expect_failure(run_cli("policy uniform --model lenet5 --weight nosuch:4 --out " + out), {"--weight", "nosuch", "esb"});
  expect_failure(run_cli("policy uniform --model lenet5 --weight esb:9 --out " + out),
                 {"--weight", "9 bits out of range for 'esb'", "2..8"});
  expect_failure(run_cli("policy uniform --model lenet5 --weight fixed:4 --act esb:4 --out " + out),
                 {"--act", "no activation variant"});
  expect_failure(run_cli("policy uniform --model lenet6 --weight fixed:4 --out " + out), {"lenet6", "lenet5"});
  expect_failure(run_cli("policy uniform --model lenet5 --out " + out), {"weight"});
  expect_failure(run_cli("policy frobnicate"), {"frobnicate", "uniform | show | check"});
  EXPECT_FALSE(fs::exists(out));
  const std::string keep = sentinel("keep.json");  // an existing file is left untouched
  expect_failure(run_cli("policy uniform --model lenet5 --weight esb:1 --out " + keep), {"out of range"});
  EXPECT_EQ(read_text_file(keep), "sentinel");
}

TEST(CliPolicy, CheckNamesWhatIsWrong) {
  const auto& f = files();
  {
    const std::string path = f.dir + "/malformed.json";
    std::string text = read_text_file(f.policy);
    const size_t at = text.find("\"layers\"");
    text.insert(at, "\"oops\" ");  // a value without its key
    std::ofstream(path) << text;
    const std::string line = std::to_string(1 + std::count(text.begin(), text.begin() + at, '\n'));
    expect_failure(run_cli("policy check --model lenet5 " + path),
                   {"malformed.json:" + line + ":", "malformed JSON", "line " + line + ", column"});
  }
  expect_failure(run_cli("policy check --model lenet5 " + edited_policy("unknown", [](json& j) {
                   j["layers"]["conv9"] = j["layers"]["conv2"];
                   j["layers"].erase("conv2");
                 })),
                 {"unknown layer 'conv9'", "conv1, conv2, fc1, fc2, fc3"});
  expect_failure(run_cli("policy check --model lenet5 " + edited_policy("missing", [](json& j) {
                   j["layers"].erase("fc3");
                 })),
                 {"fc3", "missing from the policy"});
  expect_failure(run_cli("policy check " + edited_policy("scheme", [](json& j) { j["layers"]["conv2"]["weight"] = "nosuch:4"; })),
                 {"layers.conv2.weight", "unknown quantizer scheme 'nosuch'"});
  expect_failure(run_cli("policy check " + edited_policy("bits", [](json& j) { j["layers"]["fc1"]["weight"] = "esb:12"; })),
                 {"layers.fc1.weight", "12 bits out of range"});
  expect_failure(run_cli("policy check " + edited_policy("key", [](json& j) { j["layers"]["fc1"].erase("act"); })),
                 {"layers.fc1", "missing required key 'act'"});
  expect_failure(run_cli("policy check " + edited_policy("bytes", [](json& j) { j["layers"]["fc1"]["weight"] = "fixed:8"; })),
                 {"layer 'fc1'", "weight_bytes"});
  expect_failure(run_cli("policy check --model lenet5 " + f.r8_policy), {"written for model 'resnet8'", "not 'lenet5'"});
  // a lenet5 policy for 3x32x32 inputs checked against the 1x28x28 model: shape mismatch names the layer
  const std::string p3 = f.dir + "/p3.json";
  ASSERT_EQ(run_cli("policy uniform --model lenet5 --dataset cifar10 --weight fixed:4 --out " + p3).rc, 0);
  expect_failure(run_cli("policy check --model lenet5 --dataset synthetic " + p3), {"layer 'conv1'", "6x3x5x5", "6x1x5x5"});
  expect_failure(run_cli("policy check --model lenet5 " + f.dir + "/nonexistent.json"), {"nonexistent.json", "does not exist"});
}

TEST(CliPolicy, ConvertFinetuneEvalExport) {
  const auto& f = files();
  const Policy p = load_policy(f.policy);
  const std::string q = f.dir + "/q.pt";
  auto r = run_cli("convert --model lenet5" + kData + "--checkpoint " + f.fp + " --policy " + f.policy +
                   " --calib-batches 2 --out " + q);
  ASSERT_EQ(r.rc, 0) << r.out;
  auto meta = read_checkpoint_meta(q);
  EXPECT_EQ(meta.kind, "quantized");
  EXPECT_EQ(Policy::from_json(meta.policy).dump(), p.dump());
  EXPECT_EQ(meta.extra["calib_images"], 128);

  r = run_cli("eval --model lenet5" + kData + "--checkpoint " + q + " --json", false);
  ASSERT_EQ(r.rc, 0) << r.out;
  json e = json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(e["weight_bytes"], p.totals.weight_bytes);
  EXPECT_DOUBLE_EQ(e["avg_weight_bits"].get<double>(), p.totals.avg_weight_bits);
  EXPECT_EQ(e["n"], 64);

  const std::string ft = f.dir + "/ft.pt";
  r = run_cli("finetune --model lenet5" + kData + "--checkpoint " + q + " --epochs 1 --out " + ft);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(read_checkpoint_meta(ft).epoch, 1);
  r = run_cli("finetune --model lenet5" + kData + "--checkpoint " + q + " --epochs 2 --resume --out " + ft);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("resuming from epoch 1"), std::string::npos) << r.out;
  meta = read_checkpoint_meta(ft);
  EXPECT_EQ(meta.epoch, 2);
  EXPECT_EQ(meta.kind, "quantized");
  EXPECT_EQ(meta.extra["history"].size(), 2u);
  EXPECT_EQ(Policy::from_json(meta.policy).dump(), p.dump());

  // finetune straight from the FP32 checkpoint converts first
  r = run_cli("finetune --model lenet5" + kData + "--checkpoint " + f.fp + " --policy " + f.policy +
              " --epochs 1 --calib-batches 1 --out " + f.dir + "/ft2.pt");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("calibrated"), std::string::npos) << r.out;

  const std::string st = f.dir + "/m.safetensors";
  r = run_cli("export --model lenet5 --dataset synthetic --threads 1 --checkpoint " + ft + " --policy " + f.policy +
              " --out " + st + " --verify --json", false);
  ASSERT_EQ(r.rc, 0) << r.out;
  json x = json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(x["weight_bytes"], p.totals.weight_bytes);
  EXPECT_EQ(x["policy_weight_bytes"], p.totals.weight_bytes);
  EXPECT_TRUE(x["verify"]["ok"].get<bool>());
  EXPECT_EQ(x["verify"]["weights"], 61470);
  EXPECT_EQ(x["file_bytes"], static_cast<int64_t>(fs::file_size(st)));
  EXPECT_FALSE(fs::exists(st + ".verify-tmp"));
  auto file = read_safetensors(st);
  EXPECT_EQ(parse_policy(file.metadata.at("policy")).dump(), p.dump());
}

TEST(CliPolicy, BadInputsLeaveOutputsAlone) {
  const auto& f = files();
  const std::string base = "--model lenet5" + kData + "--calib-batches 1 ";
  // convert: policy for another model; existing output untouched
  std::string out = sentinel("q_keep.pt");
  expect_failure(run_cli("convert " + base + "--checkpoint " + f.fp + " --policy " + f.r8_policy + " --out " + out),
                 {"written for model 'resnet8'"});
  EXPECT_EQ(read_text_file(out), "sentinel");
  // convert: checkpoint of another model
  expect_failure(run_cli("convert " + base + "--checkpoint " + f.r8 + " --policy " + f.policy + " --out " + out),
                 {"holds model 'resnet8'", "not 'lenet5'"});
  EXPECT_EQ(read_text_file(out), "sentinel");
  // corrupt checkpoint
  const std::string corrupt = f.dir + "/corrupt.pt";
  std::ofstream(corrupt) << "this is not a checkpoint at all";
  const std::string fresh = f.dir + "/never.pt";
  expect_failure(run_cli("convert " + base + "--checkpoint " + corrupt + " --policy " + f.policy + " --out " + fresh),
                 {"corrupt.pt", "corrupt"});
  // a truncated real checkpoint
  {
    std::ifstream is(f.fp, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(is)), {});
    std::ofstream(f.dir + "/trunc.pt", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  expect_failure(run_cli("convert " + base + "--checkpoint " + f.dir + "/trunc.pt --policy " + f.policy + " --out " + fresh),
                 {"trunc.pt"});
  // malformed / wrong policies through convert
  expect_failure(run_cli("convert " + base + "--checkpoint " + f.fp + " --policy " +
                         edited_policy("cv_scheme", [](json& j) { j["layers"]["fc2"]["weight"] = "nosuch:4"; }) +
                         " --out " + fresh),
                 {"layers.fc2.weight", "nosuch"});
  expect_failure(run_cli("convert " + base + "--checkpoint " + f.fp + " --policy " + f.dir + "/none.json --out " + fresh),
                 {"none.json"});
  EXPECT_FALSE(fs::exists(fresh));
  // finetune / export / eval with bad inputs
  expect_failure(run_cli("finetune " + base + "--checkpoint " + f.fp + " --policy " + f.r8_policy +
                         " --epochs 1 --out " + out),
                 {"resnet8"});
  EXPECT_EQ(read_text_file(out), "sentinel");
  expect_failure(run_cli("finetune " + base + "--checkpoint " + f.fp + " --epochs 1 --out " + out), {"--policy"});
  EXPECT_EQ(read_text_file(out), "sentinel");
  const std::string st = sentinel("keep.safetensors");
  expect_failure(run_cli("export --model lenet5 --dataset synthetic --checkpoint " + corrupt + " --out " + st), {"corrupt"});
  expect_failure(run_cli("export --model lenet5 --dataset synthetic --checkpoint " + f.fp + " --out " + st), {"--policy"});
  EXPECT_EQ(read_text_file(st), "sentinel");
  expect_failure(run_cli("eval --model lenet5" + kData + "--checkpoint " + f.fp + " --policy " + f.r8_policy),
                 {"written for model 'resnet8'"});
  // no stray temporaries
  for (const auto& n : autoqnn_test::list_dir(f.dir)) EXPECT_EQ(n.find(".tmp"), std::string::npos) << n;
}

// eval --policy on an FP32 checkpoint calibrates the new quantizers exactly as convert does: same loss.
TEST(CliPolicy, EvalWithPolicyCalibratesLikeConvert) {
  const auto& f = files();
  // a briefly trained model: an untrained one's outputs barely depend on the activation ranges
  const std::string fp = f.dir + "/eval_cal_fp.pt", q = f.dir + "/eval_cal.pt";
  auto t = run_cli("train --model lenet5" + kData + "--epochs 2 --lr 0.05 --seed 1 --out " + fp);
  ASSERT_EQ(t.rc, 0) << t.out;
  const std::string pol = f.dir + "/eval_cal.json";
  auto u = run_cli("policy uniform --model lenet5 --weight fixed:4 --act uniform:4:asym --out " + pol);
  ASSERT_EQ(u.rc, 0) << u.out;
  auto c = run_cli("convert --model lenet5" + kData + "--checkpoint " + fp + " --policy " + pol + " --out " + q);
  ASSERT_EQ(c.rc, 0) << c.out;
  auto a = run_cli("eval --model lenet5" + kData + "--checkpoint " + q + " --json", false);
  auto b = run_cli("eval --model lenet5" + kData + "--checkpoint " + fp + " --policy " + pol + " --json", false);
  ASSERT_EQ(a.rc, 0) << a.out;
  ASSERT_EQ(b.rc, 0) << b.out;
  const auto ja = json::parse(a.out), jb = json::parse(b.out);
  EXPECT_EQ(ja["loss"].get<double>(), jb["loss"].get<double>());
  EXPECT_EQ(ja["top1"].get<double>(), jb["top1"].get<double>());
  // without calibration (--calib-batches 0) the activation quantizers have no range yet: a different result
  auto n = run_cli("eval --model lenet5" + kData + "--checkpoint " + fp + " --policy " + pol +
                       " --calib-batches 0 --json", false);
  ASSERT_EQ(n.rc, 0) << n.out;
  EXPECT_NE(json::parse(n.out)["loss"].get<double>(), ja["loss"].get<double>());
}
