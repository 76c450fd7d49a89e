// The archive check run before LibTorch parses a checkpoint or TorchScript file (archive_check.h): sound
// archives pass (stored and deflated), hand-made damaged ones are refused with the reason, and the input
// that crashed LibTorch's importer (found by fuzz_checkpoint) is refused before LibTorch sees it.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "autoqnn/archive_check.h"
#include "autoqnn/checkpoint.h"
#include "test_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace autoqnn;

namespace {

using autoqnn_test::error_of;

void put16(std::string& s, size_t at, uint16_t v) {
  s[at] = static_cast<char>(v & 0xff);
  s[at + 1] = static_cast<char>(v >> 8);
}
void put32(std::string& s, size_t at, uint32_t v) {
  put16(s, at, static_cast<uint16_t>(v & 0xffff));
  put16(s, at + 2, static_cast<uint16_t>(v >> 16));
}
std::string le16(uint16_t v) {
  std::string s(2, '\0');
  put16(s, 0, v);
  return s;
}
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  put32(s, 0, v);
  return s;
}

struct ZipEntry {
  std::string name, data;
  bool deflate = false;
};

// A minimal zip writer (APPNOTE 4.3): local headers + data, central directory, end record.
std::string make_zip(const std::vector<ZipEntry>& entries) {
  std::string out, cd;
  for (const auto& e : entries) {
    std::string body = e.data;
    if (e.deflate) {
      z_stream z{};
      deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
      body.assign(deflateBound(&z, e.data.size()), '\0');
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(e.data.data()));
      z.avail_in = static_cast<uInt>(e.data.size());
      z.next_out = reinterpret_cast<Bytef*>(&body[0]);
      z.avail_out = static_cast<uInt>(body.size());
      deflate(&z, Z_FINISH);
      body.resize(z.total_out);
      deflateEnd(&z);
    }
    const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(e.data.data()),
                                                     static_cast<uInt>(e.data.size())));
    const uint16_t method = e.deflate ? 8 : 0;
    const uint32_t offset = static_cast<uint32_t>(out.size());
    out += le32(0x04034b50) + le16(20) + le16(0) + le16(method) + le32(0) + le32(crc) +
           le32(static_cast<uint32_t>(body.size())) + le32(static_cast<uint32_t>(e.data.size())) +
           le16(static_cast<uint16_t>(e.name.size())) + le16(0) + e.name + body;
    cd += le32(0x02014b50) + le16(20) + le16(20) + le16(0) + le16(method) + le32(0) + le32(crc) +
          le32(static_cast<uint32_t>(body.size())) + le32(static_cast<uint32_t>(e.data.size())) +
          le16(static_cast<uint16_t>(e.name.size())) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) +
          le32(offset) + e.name;
  }
  const uint32_t cd_off = static_cast<uint32_t>(out.size());
  out += cd;
  out += le32(0x06054b50) + le16(0) + le16(0) + le16(static_cast<uint16_t>(entries.size())) +
         le16(static_cast<uint16_t>(entries.size())) + le32(static_cast<uint32_t>(cd.size())) + le32(cd_off) + le16(0);
  return out;
}

std::vector<ZipEntry> minimal() {
  return {{"m/data.pkl", std::string(100, 'p')}, {"m/data/0", std::string(64, 'w')}, {"m/version", "3\n"}};
}

// The reason only: what follows "is not a sound LibTorch archive: "
std::string reason(const std::string& bytes, ArchiveCheckOptions opts = {}) {
  const std::string e = error_of([&] { check_torch_archive_bytes(bytes, "z.pt", opts); });
  const std::string head = "archive 'z.pt' is not a sound LibTorch archive: ";
  if (e.compare(0, head.size(), head) != 0) return "unexpected: " + e;
  const std::string tail = " (refused before LibTorch reads it)";
  return e.substr(head.size(), e.size() - head.size() - tail.size());
}

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

size_t eocd(const std::string& z) { return z.rfind(std::string("PK\x05\x06", 4)); }

TEST(ArchiveCheck, SoundArchivesPassStoredAndDeflated) {
  auto r = check_torch_archive_bytes(make_zip(minimal()), "z.pt");
  EXPECT_EQ(r.prefix, "m");
  EXPECT_EQ(r.names, (std::vector<std::string>{"m/data.pkl", "m/data/0", "m/version"}));
  auto ents = minimal();
  ents[0].deflate = true;
  ents.push_back({"m/.data/version", "3\n", true});
  EXPECT_EQ(check_torch_archive_bytes(make_zip(ents), "z.pt").names.size(), 4u);
  // a deflated record larger than the 1 MiB read chunk: its input ends long before its output does
  std::string big(3u << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7) % 251 < 3 ? i % 256 : 'a');
  ents.push_back({"m/data/1", big, true});
  EXPECT_EQ(check_torch_archive_bytes(make_zip(ents), "z.pt").names.size(), 5u);
  // the same deflate stream cut short (its recorded compressed size halved): refused, not read past
  std::string cut = make_zip({{"m/data.pkl", big, true}, {"m/version", "3\n"}});
  const size_t cut_cd = eocd(cut) - 2 * 46 - (10 + 9);
  const uint32_t csize = static_cast<uint32_t>(static_cast<unsigned char>(cut[cut_cd + 20])) |
                         static_cast<uint32_t>(static_cast<unsigned char>(cut[cut_cd + 21])) << 8 |
                         static_cast<uint32_t>(static_cast<unsigned char>(cut[cut_cd + 22])) << 16;
  put32(cut, cut_cd + 20, csize / 2);
  EXPECT_EQ(reason(cut), "deflated entry 'm/data.pkl' ends before its stream does");

  // a real checkpoint: LibTorch's own writer (64-byte aligned records, padding extra fields)
  const std::string d = std::string(AUTOQNN_TEST_TMP) + "/archive_check_" + std::to_string(::getpid());
  fs::create_directories(d);
  torch::nn::Linear lin(3, 2);
  CheckpointMeta m;
  m.model = "lin";
  save_checkpoint(d + "/a.pt", *lin, m);
  r = check_torch_archive_file(d + "/a.pt");
  EXPECT_EQ(r.prefix, "archive");
  EXPECT_NE(std::find(r.names.begin(), r.names.end(), "archive/data.pkl"), r.names.end());
  autoqnn_test::remove_tree(d);
}

TEST(ArchiveCheck, StructuralDamageIsRefusedWithTheReason) {
  const std::string z = make_zip(minimal());
  EXPECT_EQ(reason(""), "too short (0 bytes) to be a zip archive");
  EXPECT_EQ(reason(z.substr(0, z.size() - 5)), "no end-of-central-directory record (truncated, or not a zip archive)");
  EXPECT_EQ(reason(z.substr(0, z.size() / 2)), "no end-of-central-directory record (truncated, or not a zip archive)");
  const size_t e = eocd(z);
  const uint32_t cd_off = static_cast<uint32_t>(e - 3 * 46 - (10 + 8 + 9));  // 283
  {  // central directory offset past the end
    std::string b = z;
    put32(b, e + 16, 0x7fffffff);
    EXPECT_EQ(reason(b), "the central directory (offset 2147483647, 165 bytes) lies outside the file");
  }
  {  // a hostile entry count
    std::string b = z;
    put16(b, e + 8, 0xfffe);
    put16(b, e + 10, 0xfffe);
    EXPECT_EQ(reason(b), "the end record claims 65534 entries, more than 165 bytes of central directory can hold");
    ArchiveCheckOptions few;
    few.max_entries = 2;
    EXPECT_EQ(reason(z, few), "3 entries (at most 2)");
  }
  {  // the first entry's local header offset beyond the data area, then onto another entry's header
    std::string b = z;
    put32(b, cd_off + 42, 100000);
    EXPECT_EQ(reason(b), "entry 'm/data.pkl': local header offset 100000 lies outside the data area (" +
                             std::to_string(cd_off) + " bytes)");
    const size_t second = z.find(std::string("PK\x03\x04", 4), 1);
    put32(b, cd_off + 42, static_cast<uint32_t>(second));
    EXPECT_EQ(reason(b), "entry 'm/data.pkl': its local header names 'm/data/0'");
  }
  {  // a size that runs into the central directory
    std::string b = z;
    put32(b, cd_off + 20, 5000);
    put32(b, cd_off + 24, 5000);
    EXPECT_EQ(reason(b), "entry 'm/data.pkl': its 5000 bytes at offset 40 run past the data area (" +
                             std::to_string(cd_off) + " bytes)");
  }
  {  // two entries sharing bytes: the second's central record points at the first's local header
    auto ents = minimal();
    ents[1].name = "m/data.pkl";
    EXPECT_EQ(reason(make_zip(ents)), "entry 'm/data.pkl' appears twice");
    std::string b = z;
    put32(b, cd_off + 20, 120);  // data.pkl claims 20 bytes of the next entry
    put32(b, cd_off + 24, 120);
    EXPECT_EQ(reason(b), "entries 'm/data.pkl' and 'm/data/0' overlap");
  }
  {  // bad names and missing records
    auto ents = minimal();
    ents[1].name = "m/../etc/passwd";
    EXPECT_EQ(reason(make_zip(ents)), "an entry name with '..': 'm/../etc/passwd'");
    ents[1].name = std::string("m/a\x01", 4);
    EXPECT_EQ(reason(make_zip(ents)), "an entry name with a control character or backslash");
    ents[1].name = "other/data/0";
    EXPECT_EQ(reason(make_zip(ents)), "entry 'other/data/0' is outside the archive's folder 'm'");
    EXPECT_EQ(reason(make_zip({{"m/version", "3\n"}})), "no 'm/data.pkl' record");
    EXPECT_EQ(reason(make_zip({{"m/data.pkl", "x"}})), "no 'm/version' record");
  }
  {  // an unknown compression method, and a deflated record that inflates to more than it says
    std::string b = z;
    put16(b, cd_off + 10, 12);
    EXPECT_EQ(reason(b), "entry 'm/data.pkl' uses compression method 12 (LibTorch reads stored or deflated records)");
    auto ents = minimal();
    ents[0].deflate = true;
    std::string c = make_zip(ents);
    const size_t c_cd = eocd(c) - 3 * 46 - (10 + 8 + 9);
    put32(c, c_cd + 24, 50);
    EXPECT_EQ(reason(c), "deflated entry 'm/data.pkl' inflates to more than its recorded 50 bytes");
  }
}

TEST(ArchiveCheck, CrcOfEveryRecordStorageDeferredOnRequest) {
  std::string z = make_zip(minimal());
  std::string pkl = z, storage = z;
  pkl[z.find("pppp")] ^= 0x20;
  storage[z.find("wwww")] ^= 0x20;
  EXPECT_EQ(reason(pkl), "record 'm/data.pkl' does not match its CRC32 (the file is damaged)");
  EXPECT_EQ(reason(storage), "record 'm/data/0' does not match its CRC32 (the file is damaged)");
  ArchiveCheckOptions defer;
  defer.defer_storage_crc = true;
  EXPECT_EQ(reason(pkl, defer), "record 'm/data.pkl' does not match its CRC32 (the file is damaged)");
  EXPECT_EQ(check_torch_archive_bytes(storage, "z.pt", defer).bad_storage, std::vector<std::string>{"m/data/0"});
  ArchiveCheckOptions no_crc;
  no_crc.verify_crc = false;
  EXPECT_NO_THROW(check_torch_archive_bytes(pkl, "z.pt", no_crc));
}

// fuzz_checkpoint's input that made LibTorch 1.13's importer SEGV (ScriptTypeParser::parseClassConstant):
// a byte of data.pkl mutated. Refused by the archive check, naming the record, before LibTorch runs.
TEST(ArchiveCheck, FuzzerCrashInputIsRefusedBeforeLibTorch) {
  const std::string crash = std::string(AUTOQNN_SOURCE_DIR) +
                            "/fuzz/corpus/checkpoint/crash-0f51dc886b97a611cb26314ba8a2fb80d29209d6";
  ASSERT_TRUE(fs::exists(crash));
  EXPECT_EQ(error_of([&] { read_checkpoint_meta(crash); }),
            "checkpoint '" + crash + "' is not a sound LibTorch archive: record 'archive/data.pkl' does not match "
            "its CRC32 (the file is damaged) (refused before LibTorch reads it)");
  torch::nn::Linear lin(3, 2);
  EXPECT_NE(error_of([&] { load_checkpoint_weights(crash, *lin); }).find("record 'archive/data.pkl'"), std::string::npos);
  // the same file as a TorchScript model's bytes
  EXPECT_NE(error_of([&] { check_torch_archive_bytes(read_file(crash), "m.pt"); }).find("does not match its CRC32"),
            std::string::npos);
}

}  // namespace
