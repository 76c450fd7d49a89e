// The installed layout: `cmake --install <build> --prefix P` puts the binary in P/bin and configs/ in
// P/share/autoqnn/configs, and the installed binary, run from a directory outside the repository, finds its
// data files there (data_files.h): `analyze` and `search` with the default search space, `policy check`
// with the installed schema. And the lookup itself (order, short space names, errors).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "autoqnn/data_files.h"
#include "autoqnn/model.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "autoqnn/sensitivity.h"
#include "test_util.h"

using namespace autoqnn;
using autoqnn_test::CliResult;

namespace {

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool starts_with(const std::string& s, const std::string& head) { return s.compare(0, head.size(), head) == 0; }

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs `command` in `cwd` (stdout + stderr).
CliResult run_in(const std::string& cwd, const std::string& command) {
  CliResult r;
  FILE* p = popen(("cd " + quote(cwd) + " && " + command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A fresh directory outside the repository and the build tree (TMPDIR or /tmp), removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/autoqnn_install_XXXXXX";
    if (mkdtemp(tmpl.data())) path = tmpl;
  }
  ~TempDir() {
    if (!path.empty()) autoqnn_test::remove_tree(path);
  }
};

}  // namespace

TEST(Install, InstalledBinaryFindsItsDataOutsideTheRepository) {
  TempDir tmp;
  ASSERT_FALSE(tmp.path.empty());
  const std::string prefix = tmp.path + "/prefix", work = tmp.path + "/work";
  ASSERT_EQ(::mkdir(work.c_str(), 0755), 0);

  CliResult r = run_in(tmp.path, quote(AUTOQNN_CMAKE) + " --install " + quote(AUTOQNN_BUILD_DIR) + " --prefix " +
                                     quote(prefix));
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::string bin = prefix + "/bin/autoqnn", data = prefix + "/share/autoqnn/configs";
  ASSERT_TRUE(is_file(bin)) << r.out;
  EXPECT_EQ(::access(bin.c_str(), X_OK), 0);
  for (const char* f : {"policy.schema.json", "search_space/default.json", "search_space/lowbit.json"})
    EXPECT_TRUE(is_file(data + "/" + f)) << f;

  // The places an installed binary may take configs/ from: its prefix (next to the executable) or the
  // configured install dir, never the source tree.
  const std::string rel_space = "configs/search_space/default.json";
  const std::string configured = data_file_locations(rel_space).at(1);  // <install prefix>/share/autoqnn/...
  auto installed = [&](const std::string& p) { return p == prefix + "/share/autoqnn/" + rel_space || p == configured; };

  const std::string q = quote(bin);
  // --threads 1: intra-op threads spin when the machine is busy (ctest -j), which slows a run tenfold
  const std::string data_opts = " --model lenet5 --dataset synthetic --train-limit 300 --test-limit 100 --threads 1";
  r = run_in(work, q + " train" + data_opts + " --batch-size 50 --epochs 1 --out fp.pt");
  ASSERT_EQ(r.rc, 0) << r.out;
  ASSERT_TRUE(is_file(work + "/fp.pt")) << r.out;

  // analyze with the default search space (configs/search_space/default.json is not under `work`)
  r = run_in(work, q + " analyze" + data_opts + " --checkpoint fp.pt --no-accuracy --calib-batches 1 --out sens.csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto rows = ptq::parse_sensitivity_csv(read_text_file(work + "/sens.csv"), "sens.csv");
  std::set<std::string> layers;
  for (const auto& row : rows) layers.insert(row.layer);
  EXPECT_EQ(layers, (std::set<std::string>{"conv1", "conv2", "fc1", "fc2", "fc3"}));
  EXPECT_GT(rows.size(), layers.size());  // the searched layers have several candidates

  // search with the default space: a policy that meets its budget and records the installed space
  r = run_in(work, q + " search" + data_opts + " --batch-size 50 --checkpoint fp.pt --avg-bits 4 --epochs 1 "
                       "--warmup 0 --steps-per-epoch 2 --val-limit 50 --calib-batches 1 --out p.json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const Policy p = load_policy(work + "/p.json");
  EXPECT_LE(p.totals.avg_weight_bits, 4.0);
  EXPECT_LE(static_cast<double>(p.totals.weight_bytes), 4.0 * static_cast<double>(p.totals.params) / 8.0);
  auto model = make_model("lenet5", ModelConfig{1, 28, 10});
  EXPECT_NO_THROW(check_policy(p, *model));
  const std::string space_path = p.search["space"]["path"].get<std::string>();
  EXPECT_TRUE(installed(space_path)) << space_path;
  EXPECT_FALSE(starts_with(space_path, AUTOQNN_SOURCE_DIR)) << space_path;

  bool pact = false;
  for (const auto& row : rows) pact = pact || row.act.rfind("pact", 0) == 0;
  EXPECT_TRUE(pact);  // the default space's candidates (its activations are quantized)

  // the schema of `policy check` from the installed data; an unknown space names where it was looked for
  r = run_in(work, q + " policy check p.json");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("schema valid"), std::string::npos) << r.out;
  r = run_in(work, q + " analyze" + data_opts + " --checkpoint fp.pt --space nosuch --out x.csv");
  EXPECT_EQ(r.rc, 1) << r.out;
  for (const char* s : {"cannot open search space 'nosuch'", "configs/search_space/nosuch.json", "/share/autoqnn/"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  EXPECT_FALSE(is_file(work + "/x.csv"));
}

TEST(DataFiles, LookupOrderShortNamesAndErrors) {
  // As given when it exists (unchanged), else the install, exe-relative and source-tree places.
  const std::string src = std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/lowbit.json";
  EXPECT_EQ(find_data_file(src), src);
  const auto places = data_file_locations("configs/policy.schema.json");
  ASSERT_EQ(places.size(), 4u);
  EXPECT_EQ(places.front(), "configs/policy.schema.json");
  EXPECT_NE(places[1].find("/share/autoqnn/configs/policy.schema.json"), std::string::npos) << places[1];
  EXPECT_NE(places[2].find("/share/autoqnn/configs/policy.schema.json"), std::string::npos) << places[2];
  EXPECT_EQ(places.back(), std::string(AUTOQNN_SOURCE_DIR) + "/configs/policy.schema.json");
  EXPECT_EQ(data_file_locations("/abs/x.json"), std::vector<std::string>{"/abs/x.json"});
  EXPECT_TRUE(is_file(find_data_file("configs/policy.schema.json")));

  // --space NAME: configs/search_space/NAME.json
  const std::string low = find_search_space("lowbit");
  EXPECT_TRUE(is_file(low)) << low;
  EXPECT_NE(low.find("configs/search_space/lowbit.json"), std::string::npos) << low;
  EXPECT_EQ(find_search_space(low), low);

  try {
    find_data_file("configs/nosuch.json");
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    for (const auto& p : data_file_locations("configs/nosuch.json")) EXPECT_NE(m.find(p), std::string::npos) << m;
  }
  try {
    find_search_space("nosuch");
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot open search space 'nosuch'"), std::string::npos) << m;
    EXPECT_NE(m.find(std::string(AUTOQNN_SOURCE_DIR) + "/configs/search_space/nosuch.json"), std::string::npos) << m;
  }
}
