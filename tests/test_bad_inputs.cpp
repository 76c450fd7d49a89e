// The bad-input corpus (tests/bad_inputs/cases.txt): every case runs the built `autoqnn` in a fresh
// directory holding small fixtures, then checks the exit status, the message, that the listed inputs are
// byte-identical, that the listed outputs do not exist, and that no temporary or lock file is left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include "autoqnn/image_io.h"
#include "autoqnn/checkpoint.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "quantizers/registry.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace autoqnn;

namespace {

const std::string kCorpus = std::string(AUTOQNN_SOURCE_DIR) + "/tests/bad_inputs";

struct Case {
  std::string name, setup, run;
  int rc = 1;
  std::vector<std::string> expect, unchanged, absent, needs;
};
// gtest prints a parameter in the test's listing (and so in ctest's names): the case's name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<std::string> words(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> w;
  for (std::string x; is >> x;) w.push_back(x);
  return w;
}

std::vector<Case> load_cases() {
  std::ifstream f(kCorpus + "/cases.txt");
  std::vector<Case> cases;
  for (std::string line; std::getline(f, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon), value = line.substr(colon + 2);
    if (key == "name") {
      cases.emplace_back();
      cases.back().name = value;
    }
    if (cases.empty()) continue;
    Case& c = cases.back();
    if (key == "setup") c.setup = value;
    else if (key == "run") c.run = value;
    else if (key == "rc") c.rc = std::stoi(value);
    else if (key == "expect") c.expect.push_back(value);
    else if (key == "unchanged") c.unchanged = words(value);
    else if (key == "absent") c.absent = words(value);
    else if (key == "needs") c.needs = words(value);
  }
  return cases;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// fp.pt (untrained lenet5, saved in-process), p.json (fixed:4 / uniform:8), q.pt (autoqnn convert): made
// once per process.
const std::string& fixtures() {
  static std::string dir = [] {
    std::string d = std::string(AUTOQNN_TEST_TMP) + "/bad_inputs_fixtures_" + std::to_string(::getpid());
    autoqnn_test::remove_tree(d);
    fs::create_directories(d);
    torch::manual_seed(1);
    auto model = make_model("lenet5", ModelConfig{1, 28, 10});
    CheckpointMeta m;
    m.model = "lenet5";
    m.config = ModelConfig{1, 28, 10};
    m.dataset = "synthetic";
    save_checkpoint(d + "/fp.pt", *model, m);
    save_policy(d + "/p.json", uniform_policy(*model, quant::QuantSpec::parse("fixed:4"),
                                              quant::QuantSpec::parse("uniform:8"), 0));
    auto r = autoqnn_test::run_cli("convert --dataset synthetic --checkpoint " + d + "/fp.pt --policy " + d +
                                   "/p.json --calib-batches 0 --out " + d + "/q.pt");
    if (r.rc != 0) ADD_FAILURE() << "fixture q.pt: " << r.out;
    return d;
  }();
  return dir;
}

bool is_leftover(const std::string& name) {
  if (name.find(".autoqnn-tmp.") != std::string::npos || name.find(".autoqnn-lock") != std::string::npos) return true;
  auto pos = name.rfind(".tmp.");
  return pos != std::string::npos && name.find_first_not_of("0123456789", pos + 5) == std::string::npos;
}

class BadInput : public ::testing::TestWithParam<Case> {};

TEST_P(BadInput, FailsCleanly) {
  const Case& c = GetParam();
  for (const auto& n : c.needs)
    if (n == "images" && !image_decoding_available()) GTEST_SKIP() << no_image_decoding_message();
  const std::string dir = std::string(AUTOQNN_TEST_TMP) + "/bad_input_" + c.name + "_" + std::to_string(::getpid());
  autoqnn_test::remove_tree(dir);
  fs::create_directories(dir);
  for (const char* f : {"fp.pt", "p.json", "q.pt"}) fs::copy_file(fixtures() + "/" + f, dir + "/" + f);
  const std::string env = "cd '" + dir + "' && export AQ='" + AUTOQNN_CLI_PATH + "' MK='" + autoqnn_test::python() + " " + kCorpus +
                          "/make_bad.py' D='--dataset synthetic --train-limit 64 --test-limit 64 --batch-size 32';";
  auto sh = [&](const std::string& script) {
    std::ofstream(dir + "/.case.sh") << env << "\n" << script << "\n";
    return autoqnn_test::run_cli_command("bash '" + dir + "/.case.sh'");
  };
  if (!c.setup.empty()) {
    auto s = sh(c.setup);
    ASSERT_EQ(s.rc, 0) << "setup of " << c.name << ": " << s.out;
  }
  std::map<std::string, std::string> before;
  for (const auto& f : c.unchanged) before[f] = slurp(dir + "/" + f);
  const std::vector<std::string> existing = autoqnn_test::list_tree(dir);

  auto r = sh(c.run);
  EXPECT_EQ(r.rc, c.rc) << r.out;
  for (const auto& e : c.expect) EXPECT_NE(r.out.find(e), std::string::npos) << "expected '" << e << "' in:\n" << r.out;
  EXPECT_EQ(r.out.find("terminate called"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Exception raised from"), std::string::npos) << "a C++ backtrace in the message:\n" << r.out;
  for (const auto& f : c.unchanged) EXPECT_EQ(slurp(dir + "/" + f), before[f]) << f << " was modified";
  for (const auto& f : c.absent) EXPECT_FALSE(fs::exists(dir + "/" + f)) << f << " exists";
  for (const auto& p : autoqnn_test::list_tree(dir)) {
    const bool from_setup = std::find(existing.begin(), existing.end(), p) != existing.end();
    if (is_leftover(fs::path(p).filename().string()) && !from_setup) ADD_FAILURE() << "left behind: " << p;
  }
  if (!HasFailure()) autoqnn_test::remove_tree(dir);
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadInput, ::testing::ValuesIn(load_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(BadInputCorpus, EveryCaseHasACheck) {
  auto cases = load_cases();
  EXPECT_GE(cases.size(), 35u);
  for (const auto& c : cases) {
    EXPECT_FALSE(c.run.empty()) << c.name;
    EXPECT_FALSE(c.expect.empty()) << c.name;
  }
}

}  // namespace
