// Imported TorchScript models (torchscript_model.h): real files written at test time by Debian's
// python3-torch (tests/make_torchscript_models.py) — a scripted CNN, a traced residual net, torchvision's
// resnet18 (1-channel stem, 28x28 inputs), the zoo's LeNet-5 written in Python, and a frozen module.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "autoqnn/checkpoint.h"
#include "autoqnn/data.h"
#include "autoqnn/model.h"
#include "autoqnn/model_io.h"
#include "autoqnn/policy.h"
#include "autoqnn/torchscript_model.h"
#include "test_fixtures.h"
#include "test_util.h"

using namespace autoqnn;
using autoqnn_test::run_cli;
using json = nlohmann::json;

namespace {

const ModelConfig kCfg{1, 28, 10};

const std::string& ts_dir() {
  static const std::string dir = [] {
    // Per process: ctest -j runs each test case in its own process, and each would empty a shared folder.
    const std::string d = autoqnn_test::make_tmp_dir("ts_import");
    std::string here = __FILE__;
    here = here.substr(0, here.rfind('/'));
    const std::string cmd = autoqnn_test::python() + " " + here + "/make_torchscript_models.py " + d + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("could not run: " + cmd);
    return d;
  }();
  return dir;
}
std::string ts(const std::string& name) { return ts_dir() + "/" + name + ".pt"; }

std::vector<std::string> layer_names(Model& m) {
  std::vector<std::string> v;
  for (auto& l : quant_layers(m)) v.push_back(l.name);
  return v;
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

void write_raw(const std::string& path, const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kFloat32);
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(c.data_ptr()), c.numel() * 4);
}
torch::Tensor read_raw(const std::string& path, std::vector<int64_t> shape) {
  std::ifstream f(path, std::ios::binary);
  auto t = torch::empty(shape, torch::kFloat32);
  f.read(static_cast<char*>(t.data_ptr()), t.numel() * 4);
  EXPECT_EQ(f.gcount(), t.numel() * 4) << path;
  return t;
}

}  // namespace

TEST(TorchScriptImport, FindsEveryConvAndLinearByModulePath) {
  auto cnn = make_model(ts("cnn_scripted"), kCfg);
  EXPECT_EQ(layer_names(*cnn), (std::vector<std::string>{"conv1", "conv2", "fc"}));
  auto res = make_model(ts("resnet_traced"), kCfg);
  EXPECT_EQ(layer_names(*res), (std::vector<std::string>{"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1",
                                                         "layer1.1.conv2", "layer1.1.downsample.0", "fc"}));
  auto r18 = make_model(ts("resnet18"), kCfg);
  const auto names = layer_names(*r18);
  ASSERT_EQ(names.size(), 21u);  // stem + 16 block convs + 3 downsample convs + fc
  EXPECT_EQ(names.front(), "conv1");
  EXPECT_EQ(names[7], "layer2.0.downsample.0");
  EXPECT_EQ(names.back(), "fc");
  // Profile: the numbers the budgets use.
  const auto prof = profile_model(*cnn);
  ASSERT_EQ(prof.size(), 3u);
  EXPECT_EQ(prof[0].kind, "conv2d");
  EXPECT_EQ(prof[0].macs, 28 * 28 * 8 * 9);
  EXPECT_EQ(prof[1].macs, 7 * 7 * 16 * 8 * 9);  // pool 2 then stride 2
  EXPECT_EQ(prof[2].kind, "linear");
  EXPECT_EQ(prof[2].macs, 160);
  EXPECT_EQ(prof[1].input_numel, 8 * 14 * 14);
  // Every parameter and buffer of the module is the Model's, by the same name.
  auto params = cnn->named_parameters(true);
  EXPECT_EQ(params.size(), 9u);  // conv1.w, conv2.w/b, bn1.w/b, bn2.w/b, fc.w/b
  EXPECT_NE(params.find("bn2.bias"), nullptr);
  EXPECT_NE(cnn->named_buffers(true).find("bn1.running_mean"), nullptr);
}

TEST(TorchScriptImport, RefusesWhatItCannotQuantizeWithAReason) {
  try {
    make_model(ts("frozen"), kCfg);
    FAIL() << "a frozen module was accepted";
  } catch (const std::exception& e) {
    EXPECT_TRUE(contains(e.what(), "freeze")) << e.what();
    EXPECT_TRUE(contains(e.what(), "frozen.pt")) << e.what();
  }
  try {
    make_model(ts("cnn_scripted"), ModelConfig{1, 28, 7});
    FAIL() << "wrong class count accepted";
  } catch (const std::exception& e) {
    EXPECT_TRUE(contains(e.what(), "--num-classes")) << e.what();
  }
  EXPECT_THROW(make_model(ts_dir() + "/nonexistent.pt", kCfg), std::invalid_argument);
}

// The zoo's LeNet-5 written in Python gives the zoo model's numbers exactly: logits, loss, gradients of the
// latent weights and of the quantizers' learned parameters, BN running statistics.
TEST(TorchScriptImport, ImportedLeNetEqualsTheZooLeNetUnderAPolicy) {
  torch::manual_seed(3);
  auto zoo = make_model("lenet5", kCfg);
  auto imp = make_model(ts("lenet5"), kCfg);
  EXPECT_EQ(model_fingerprint(*zoo), model_fingerprint(*imp));
  auto pz = profile_model(*zoo), pi = profile_model(*imp);
  for (size_t i = 0; i < pz.size(); ++i) EXPECT_EQ(pz[i].macs, pi[i].macs) << pz[i].name;
  {
    torch::NoGradGuard ng;
    auto src = zoo->named_parameters(true);
    for (auto& p : imp->named_parameters(true)) p.value().copy_(*src.find(p.key()));
  }
  // Weight quantizers + PACT activation quantizers (a learned clip): gradients reach the quantizers.
  const auto w = quant::QuantSpec::parse("esb:4"), a = quant::QuantSpec::parse("pact:4");
  apply_policy(*zoo, uniform_policy(*zoo, w, a));
  apply_policy(*imp, uniform_policy(*imp, w, a));
  auto x = torch::randn({8, 1, 28, 28});
  auto y = torch::randint(0, 10, {8});
  zoo->train();
  imp->train();
  auto lz = torch::cross_entropy_loss(zoo->forward(x), y);
  auto li = torch::cross_entropy_loss(imp->forward(x), y);
  EXPECT_EQ(lz.item<float>(), li.item<float>());
  lz.backward();
  li.backward();
  auto gz = zoo->named_parameters(true);
  int64_t checked = 0, quantizer_grads = 0;
  for (auto& p : imp->named_parameters(true)) {
    auto* z = gz.find(p.key());
    ASSERT_NE(z, nullptr) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ((p.value().grad() - z->grad()).abs().max().item<float>(), 0.0f) << p.key();
    ++checked;
    if (p.key().find(".wq.") != std::string::npos || p.key().find(".aq.") != std::string::npos) ++quantizer_grads;
  }
  EXPECT_EQ(checked, static_cast<int64_t>(gz.size()));
  EXPECT_GT(quantizer_grads, 0);
  auto bz = zoo->named_buffers(true);
  for (auto& b : imp->named_buffers(true))
    EXPECT_TRUE(b.value().equal(*bz.find(b.key()))) << b.key();
  // eval mode switches the scripted BN to running statistics like the zoo's
  zoo->eval();
  imp->eval();
  torch::NoGradGuard ng;
  EXPECT_EQ((zoo->forward(x) - imp->forward(x)).abs().max().item<float>(), 0.0f);
}

// The whole CLI journey on each imported model: layers, search (QSS) within its budget, convert at 4 bits,
// one finetune epoch lowers the loss, the checkpoint reloads, export --format torchscript runs in plain
// Python with the same logits and top-1 as `autoqnn eval`.
class TorchScriptCli : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchScriptCli, LayersSearchConvertFinetuneExport) {
  const std::string name = GetParam(), model = ts(name), dir = ts_dir() + "/" + name;
  std::system(("mkdir -p " + dir).c_str());
  const bool big = name == "resnet18";
  const std::string data = std::string(" --dataset synthetic --threads 2 --seed 5 --batch-size 32") +
                           (big ? " --train-limit 256 --test-limit 32" : " --train-limit 480 --test-limit 128");
  // resnet18 starts from random weights: with 64 images (2 steps) its BN running statistics barely move and
  // the test loss did not fall (2.721 -> 2.727); 256 images (8 steps) lower it for seeds 5, 6, 7 (measured).

  auto r = run_cli("layers --model " + model + data + " --json", false);
  ASSERT_EQ(r.rc, 0) << r.out;
  json lj = json::parse(r.out.substr(r.out.find('{')));
  auto m = make_model(model, kCfg);
  EXPECT_EQ(lj["layers"].size(), quant_layers(*m).size());
  EXPECT_EQ(lj["fingerprint"], model_fingerprint(*m));

  // QSS over a tiny space with an average-bits budget.
  const std::string space = dir + "/space.json";
  std::ofstream(space) << R"({"name": "tiny", "granularity": "per-layer", "weight": ["fixed:{2,4,8}"], "act": ["fp32"]})";
  const std::string pol = dir + "/searched.json";
  r = run_cli("search --method qss --model " + model + data + " --space " + space +
              " --avg-bits 4 --epochs 1 --warmup 0 --steps-per-epoch 2 --out " + pol);
  ASSERT_EQ(r.rc, 0) << r.out;
  Policy searched = load_policy(pol);
  EXPECT_LE(searched.totals.avg_weight_bits, 4.0 + 1e-9);
  EXPECT_EQ(searched.layers.size(), quant_layers(*m).size());

  // convert at 4 bits (uniform policy), finetune one epoch
  const std::string p4 = dir + "/p4.json", q = dir + "/q.pt", ft = dir + "/ft.pt";
  r = run_cli("policy uniform --model " + model + " --dataset synthetic --weight fixed:4 --out " + p4);
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run_cli("convert --model " + model + data + " --policy " + p4 + " --calib-batches 1 --out " + q);
  ASSERT_EQ(r.rc, 0) << r.out;
  auto eval_json = [&](const std::string& ck, const std::string& extra = "") {
    auto e = run_cli("eval --model " + model + data + " --checkpoint " + ck + extra + " --json", false);
    EXPECT_EQ(e.rc, 0) << e.out;
    return json::parse(e.out.substr(e.out.find('{')));
  };
  const json before = eval_json(q);
  EXPECT_DOUBLE_EQ(before["avg_weight_bits"].get<double>(), load_policy(p4).totals.avg_weight_bits);
  EXPECT_LT(before["avg_weight_bits"].get<double>(), 4.1);  // 4-bit codes + per-tensor scales
  r = run_cli("finetune --model " + model + data + " --checkpoint " + q + " --epochs 1 --lr 0.02 --out " + ft);
  ASSERT_EQ(r.rc, 0) << r.out;
  const json after = eval_json(ft);
  EXPECT_LT(after["loss"].get<double>(), before["loss"].get<double>()) << before << " -> " << after;

  // The checkpoint carries the original module (reloads without the file) and resumes.
  {
    std::ifstream f(model, std::ios::binary);
    const std::string original((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(read_checkpoint_torchscript(ft), original);
    auto l = load_model(ft, "", kCfg);
    EXPECT_EQ(quant_layers(*l.model).size(), quant_layers(*m).size());
    EXPECT_TRUE(l.has_policy);
  }
  if (!big) {
    const std::string ft2 = dir + "/ft2.pt";
    std::system(("cp " + ft + " " + ft2).c_str());
    r = run_cli("finetune --model " + model + data + " --checkpoint " + q + " --epochs 2 --lr 0.02 --resume --out " + ft2);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "resuming from epoch 1")) << r.out;
    EXPECT_EQ(read_checkpoint_meta(ft2).epoch, 2);
  }

  // export --format torchscript, then plain Python runs it on the eval images
  const std::string exported = dir + "/exported.pt";
  r = run_cli("export --model " + model + data + " --checkpoint " + ft + " --format torchscript --out " + exported);
  ASSERT_EQ(r.rc, 0) << r.out;
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = 1;
  d.test_limit = big ? 32 : 128;
  d.seed = 5;
  auto test = load_splits(d).test;
  auto loaded = load_model(ft, "", kCfg);
  loaded.model->eval();
  torch::Tensor ours;
  {
    torch::NoGradGuard ng;
    ours = loaded.model->forward(test.images);
  }
  write_raw(dir + "/x.bin", test.images);
  const std::string py = autoqnn_test::python() + " -c \"import torch,sys; m=torch.jit.load(sys.argv[1]); m.eval(); "
                         "x=torch.frombuffer(bytearray(open(sys.argv[2],'rb').read()),dtype=torch.float32)"
                         ".reshape(-1,1,28,28); open(sys.argv[3],'wb').write(m(x).detach().contiguous().numpy().tobytes())\" ";
  ASSERT_EQ(std::system((py + exported + " " + dir + "/x.bin " + dir + "/y.bin").c_str()), 0);
  auto theirs = read_raw(dir + "/y.bin", {test.size(), 10});
  EXPECT_LE((ours - theirs).abs().max().item<float>(), 1e-4);
  const double top1_py = theirs.argmax(1).eq(test.labels).to(torch::kFloat64).mean().item<double>();
  EXPECT_DOUBLE_EQ(top1_py, after["top1"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Models, TorchScriptCli, ::testing::Values("cnn_scripted", "resnet_traced", "resnet18"));

static bool exists_file(const std::string& p) { return std::ifstream(p).good(); }

// Plain Python (no autoqnn) runs `exported` on the raw images in `x_bin`; returns its logits [n, 10].
static torch::Tensor python_logits(const std::string& exported, const std::string& x_bin, const std::string& y_bin,
                                   int64_t n, const std::string& check = "") {
  const std::string py = autoqnn_test::python() + " -c \"import torch,sys; m=torch.jit.load(sys.argv[1]); m.eval(); "
                         "assert 'autoqnn::' not in str(m.graph) + m.code; " + check +
                         "x=torch.frombuffer(bytearray(open(sys.argv[2],'rb').read()),dtype=torch.float32)"
                         ".reshape(-1,1,28,28); open(sys.argv[3],'wb').write(m(x).detach().contiguous().numpy().tobytes())\" ";
  EXPECT_EQ(std::system((py + exported + " " + x_bin + " " + y_bin).c_str()), 0) << exported;
  return read_raw(y_bin, {n, 10});
}

// A W4A4 policy exported as TorchScript: activation quantizers and (with --keep-latent) weight quantizers
// written as standard ATen ops with scale buffers; plain Python gives the logits of `autoqnn`'s model.
TEST(TorchScriptExport, ActivationQuantizersAndKeepLatentRunInPlainPython) {
  const std::string model = ts("cnn_scripted"), dir = ts_dir() + "/w4a4";
  std::system(("mkdir -p " + dir).c_str());
  const std::string data = " --dataset synthetic --threads 2 --seed 5 --batch-size 32 --train-limit 64 --test-limit 64";
  DataOptions d;
  d.dataset = "synthetic";
  d.train_limit = 1;
  d.test_limit = 64;
  d.seed = 5;
  auto test = load_splits(d).test;
  write_raw(dir + "/x.bin", test.images);
  // (weight, act): a per-tensor signed grid with a symmetric act grid; a per-channel asymmetric grid (offset
  // buffers) with PACT's learned clip.
  const std::vector<std::pair<std::string, std::string>> policies = {{"fixed:4", "uniform:4"},
                                                                     {"uniform:4:asym:per_channel", "pact:4"}};
  for (size_t i = 0; i < policies.size(); ++i) {
    const std::string tag = dir + "/p" + std::to_string(i), pol = tag + ".json", q = tag + ".q.pt";
    auto r = run_cli("policy uniform --model " + model + " --dataset synthetic --weight " + policies[i].first +
                     " --act " + policies[i].second + " --out " + pol);
    ASSERT_EQ(r.rc, 0) << r.out;
    r = run_cli("convert --model " + model + data + " --policy " + pol + " --calib-batches 2 --out " + q);
    ASSERT_EQ(r.rc, 0) << r.out;
    auto loaded = load_model(q, "", kCfg);
    loaded.model->eval();
    torch::Tensor ours;
    {
      torch::NoGradGuard ng;
      ours = loaded.model->forward(test.images);
    }
    for (const bool latent : {false, true}) {
      const std::string out = tag + (latent ? ".latent.pt" : ".baked.pt");
      r = run_cli("export --model " + model + data + " --checkpoint " + q + " --format torchscript --out " + out +
                  (latent ? " --keep-latent" : ""));
      ASSERT_EQ(r.rc, 0) << r.out;
      // keep-latent: conv2's weight is the FP32 latent one (more distinct values than 16 levels x 16 channels),
      // the scales are buffers; baked: at most 16 values per output channel.
      const std::string check = latent ? "assert m.conv2.weight.unique().numel() > 256; "
                                         "assert 'autoqnn_conv1_weight_scale' in dict(m.named_buffers()); "
                                         "assert 'autoqnn_fc_act_scale' in dict(m.named_buffers()); "
                                       : "assert all(w.unique().numel() <= 16 for w in m.conv2.weight); ";
      auto theirs = python_logits(out, dir + "/x.bin", tag + ".y.bin", test.size(), check);
      EXPECT_LE((ours - theirs).abs().max().item<float>(), 1e-4) << policies[i].first << " " << policies[i].second
                                                                 << (latent ? " keep-latent" : " baked");
      EXPECT_TRUE(ours.argmax(1).equal(theirs.argmax(1)));
    }
  }
  // A scheme that is not a grid cannot be written as ATen ops: refused, naming the layer and the scheme.
  const std::string pol = dir + "/esb.json", q = dir + "/esb.q.pt", out = dir + "/esb.pt";
  ASSERT_EQ(run_cli("policy uniform --model " + model + " --dataset synthetic --weight esb:4 --out " + pol).rc, 0);
  ASSERT_EQ(run_cli("convert --model " + model + data + " --policy " + pol + " --calib-batches 1 --out " + q).rc, 0);
  auto r = run_cli("export --model " + model + data + " --checkpoint " + q + " --format torchscript --keep-latent --out " + out);
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(contains(r.out, "layer 'conv1'") && contains(r.out, "esb")) << r.out;
  EXPECT_FALSE(exists_file(out));
  // without --keep-latent the esb weights are baked
  EXPECT_EQ(run_cli("export --model " + model + data + " --checkpoint " + q + " --format torchscript --out " + out).rc, 0);
}

// BatchNorm mode frozen by tracing: a warning says so (and eval still works); a torch.jit.freeze'd module is
// refused by a training verb with the reason.
TEST(TorchScriptImport, TracedBatchNormWarnsAndFrozenModulesAreRefusedForTraining) {
  const std::string data = " --dataset synthetic --threads 2 --seed 5 --train-limit 32 --test-limit 32";
  auto r = run_cli("eval --model " + ts("resnet_traced") + data + " --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "was traced: its BatchNorm train/eval mode was fixed at trace time")) << r.out;
  r = run_cli("eval --model " + ts("cnn_scripted") + data + " --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_FALSE(contains(r.out, "was traced")) << r.out;
  r = run_cli("train --model " + ts("frozen") + data + " --epochs 1 --out " + ts_dir() + "/frozen_ft.pt");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(contains(r.out, "torch.jit.freeze") && contains(r.out, "cannot be quantized or trained")) << r.out;
  EXPECT_FALSE(exists_file(ts_dir() + "/frozen_ft.pt"));
}
