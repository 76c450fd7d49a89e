// The reliability helpers in-process: bounded JSON reading (json_io.h), output paths, temporaries and locks
// (output_files.h), checkpoint checksums. The CLI's behaviour on bad inputs is the corpus (test_bad_inputs).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "autoqnn/checkpoint.h"
#include "autoqnn/json_io.h"
#include "autoqnn/output_files.h"
#include "autoqnn/runtime.h"
#include "test_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace autoqnn;

namespace {

using autoqnn_test::error_of;

std::string tmp_dir(const std::string& name) {
  std::string d = std::string(AUTOQNN_TEST_TMP) + "/" + name + "_" + std::to_string(::getpid());
  autoqnn_test::remove_tree(d);
  fs::create_directories(d);
  return d;
}

TEST(JsonIo, LimitsAndDuplicateKeysWithPositions) {
  EXPECT_EQ(parse_json_text(R"({"a": [1, {"b": "x"}], "c": 2.5})", "t.json")["a"][1]["b"], "x");
  // depth: 64 levels pass, 65 do not, and the error names the line and column of the 65th bracket
  EXPECT_NO_THROW(parse_json_text(std::string(64, '[') + std::string(64, ']'), "t.json"));
  EXPECT_EQ(error_of([] { parse_json_text("\n" + std::string(65, '[') + std::string(65, ']'), "t.json"); }),
            "t.json:2:65: nested more than 64 levels deep");
  EXPECT_EQ(error_of([] { parse_json_text("{\"" + std::string(1025, 'k') + "\": 1}", "t.json"); }),
            "t.json:1:2: a key of 1025 characters (at most 1024)");
  EXPECT_EQ(error_of([] { parse_json_text("[\"" + std::string(20000, 's') + "\"]", "t.json"); }),
            "t.json:1:2: a string of 20000 characters (at most 16384)");
  // a key may hold a long-ish value but not repeat; the path names where
  EXPECT_EQ(error_of([] { parse_json_text(R"({"l": [{"a": 1}, {"a": 1, "b": 2, "a": 3}]})", "t.json"); }),
            "t.json: duplicate key 'a' in l[1] (each key may appear once; JSON readers differ on which one wins)");
  EXPECT_EQ(error_of([] { parse_json_text("{\"x\": {\"y\": \n 1e999}}", "t.json"); }),
            "t.json:2:2: number '1e999' at x.y is out of range (not representable as a double)");
  EXPECT_EQ(error_of([] { parse_json_text("", "t.json"); }),
            "t.json:1:1: malformed JSON (line 1, column 1): the file is empty");
  // escaped quotes do not end a string in the pre-scan
  EXPECT_EQ(parse_json_text(R"(["a\"[[[", "b"])", "t.json")[1], "b");
}

TEST(OutputFiles, CheckedPathsSameFileAndStaleTemporaries) {
  const std::string d = tmp_dir("output_files");
  std::ofstream(d + "/in.pt") << "x";
  fs::create_directories(d + "/sub");
  fs::create_symlink(d + "/in.pt", d + "/sub/link.pt");
  EXPECT_TRUE(same_file(d + "/in.pt", d + "/sub/link.pt"));
  EXPECT_TRUE(same_file(d + "/sub/../in.pt", d + "/in.pt"));
  EXPECT_TRUE(same_file(d + "/new.json", d + "/sub/../new.json"));  // neither exists yet
  EXPECT_FALSE(same_file(d + "/in.pt", d + "/other.pt"));
  EXPECT_NE(error_of([&] { check_output_path(d + "/sub", "--out"); }).find("is a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { check_output_path(d + "/in.pt/x", "--out"); }).find("is a file, not a directory"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { check_output_path(d + "/new/deeper/x.pt", "--out"); }), "");

  // a temporary of a process that no longer exists goes; one of a live process (this one) stays
  std::ofstream(d + "/out.json.autoqnn-tmp.99999999") << "stale";
  std::ofstream(d + "/out.json.tmp.99999998") << "stale";
  std::ofstream(temp_path_for(d + "/out.json")) << "live";
  std::ofstream(d + "/other.json.autoqnn-tmp.99999999") << "another target";
  atomic_write_text(d + "/out.json", "{}");
  auto names = autoqnn_test::list_dir(d);
  std::sort(names.begin(), names.end());
  const std::string live = "out.json.autoqnn-tmp." + std::to_string(::getpid());
  EXPECT_EQ(names, (std::vector<std::string>{"in.pt", "other.json.autoqnn-tmp.99999999", "out.json", "sub"}));
  (void)live;  // atomic_write used (and removed) this process's own temporary
  EXPECT_EQ(clean_stale_files(d, false), std::vector<std::string>{d + "/other.json.autoqnn-tmp.99999999"});
  autoqnn_test::remove_tree(d);
}

TEST(OutputFiles, SecondLockFailsFastAndTheLockFileGoes) {
  const std::string d = tmp_dir("output_lock");
  const std::string out = d + "/s.json";
  {
    OutputLock a(out, "--out");
    EXPECT_TRUE(fs::exists(out + ".autoqnn-lock"));
    // flock locks belong to the open file: a second open in this process conflicts like another process
    const std::string msg = error_of([&] { OutputLock b(out, "--out"); });
    EXPECT_NE(msg.find("is being written by another autoqnn process (pid " + std::to_string(::getpid())),
              std::string::npos)
        << msg;
  }
  EXPECT_FALSE(fs::exists(out + ".autoqnn-lock"));
  EXPECT_NO_THROW(OutputLock c(out, "--out"));
  autoqnn_test::remove_tree(d);
}

TEST(Checkpoint, ChecksumNamesTheCorruptTensorAndOldFilesStillLoad) {
  const std::string d = tmp_dir("ckpt_crc");
  torch::nn::Linear lin(3, 2);
  CheckpointMeta m;
  m.model = "lin";
  save_checkpoint(d + "/a.pt", *lin, m);
  torch::nn::Linear back(3, 2);
  load_checkpoint_weights(d + "/a.pt", *back);
  EXPECT_TRUE(torch::equal(back->weight, lin->weight));

  // an archive whose tensor differs from the recorded checksum: the same metadata over other weights
  torch::serialize::InputArchive in;
  in.load_from(d + "/a.pt");
  c10::IValue meta;
  ASSERT_TRUE(in.try_read("__autoqnn_meta__", meta));
  torch::serialize::OutputArchive out;
  out.write("weight", lin->weight.detach() + 1, false);
  out.write("bias", lin->bias.detach(), false);
  out.write("__autoqnn_meta__", meta);
  out.save_to(d + "/bad.pt");
  EXPECT_EQ(error_of([&] { load_checkpoint_weights(d + "/bad.pt", *back); }),
            "checkpoint '" + d + "/bad.pt' is corrupt: tensor 'weight' does not match its CRC32 checksum "
            "(damaged file; restore it or retrain)");

  // a checkpoint from before checksums (no "checksums" in its metadata) loads
  auto j = nlohmann::json::parse(meta.toStringRef());
  j.erase("checksums");
  torch::serialize::OutputArchive old;
  old.write("weight", lin->weight.detach() * 2, false);
  old.write("bias", lin->bias.detach(), false);
  old.write("__autoqnn_meta__", c10::IValue(j.dump()));
  old.save_to(d + "/old.pt");
  load_checkpoint_weights(d + "/old.pt", *back);
  EXPECT_TRUE(torch::equal(back->weight, lin->weight * 2));
  autoqnn_test::remove_tree(d);
}

}  // namespace
