#include "autoqnn/archive_check.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>

namespace autoqnn {

namespace {

// Zip record signatures and fixed sizes (APPNOTE.TXT 4.3).
constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;
constexpr uint64_t kLocalLen = 30, kCentralLen = 46, kEndLen = 22, kLocator64Len = 20, kEnd64Len = 56;
constexpr uint32_t kMax32 = 0xffffffffu;

struct Problem : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Random access to the archive's bytes: a file or a buffer in memory.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at off (the caller has checked off + n <= size()).
  virtual void read(uint64_t off, size_t n, unsigned char* out) = 0;
};

class MemorySource : public Source {
 public:
  explicit MemorySource(const std::string& b) : b_(b) {}
  uint64_t size() const override { return b_.size(); }
  void read(uint64_t off, size_t n, unsigned char* out) override { std::memcpy(out, b_.data() + off, n); }

 private:
  const std::string& b_;
};

class FileSource : public Source {
 public:
  explicit FileSource(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw Problem("cannot be opened (" + std::string(std::strerror(errno)) + ")");
    if (S_ISDIR(st.st_mode)) throw Problem("it is a directory, not a file");
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) throw Problem("cannot be opened (" + std::string(std::strerror(errno)) + ")");
    if (fseeko(f_, 0, SEEK_END) != 0) throw Problem("cannot be read (seek failed)");
    size_ = static_cast<uint64_t>(ftello(f_));
  }
  ~FileSource() override {
    if (f_) std::fclose(f_);
  }
  uint64_t size() const override { return size_; }
  void read(uint64_t off, size_t n, unsigned char* out) override {
    if (fseeko(f_, static_cast<off_t>(off), SEEK_SET) != 0 || std::fread(out, 1, n, f_) != n)
      throw Problem("cannot be read (short read at offset " + std::to_string(off) + ")");
  }

 private:
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const unsigned char* p) { return static_cast<uint32_t>(u16(p)) | (static_cast<uint32_t>(u16(p + 2)) << 16); }
uint64_t u64(const unsigned char* p) { return static_cast<uint64_t>(u32(p)) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

// [off, off + len) lies inside [0, limit), without overflow
bool inside(uint64_t off, uint64_t len, uint64_t limit) { return off <= limit && len <= limit - off; }

struct Entry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
  uint64_t data_start = 0;  // after the local header
};

struct Directory {
  uint64_t entries = 0, cd_offset = 0, cd_size = 0;
  uint64_t cd_limit = 0;  // where the central directory must end (the first end record)
};

Directory find_directory(Source& src) {
  const uint64_t n = src.size();
  if (n < kEndLen) throw Problem("too short (" + std::to_string(n) + " bytes) to be a zip archive");
  // The end record sits in the last 22 + 65535 (comment) bytes.
  const uint64_t tail_len = std::min<uint64_t>(n, kEndLen + 0xffff);
  std::vector<unsigned char> tail(tail_len);
  src.read(n - tail_len, tail_len, tail.data());
  int64_t at = -1;
  for (int64_t i = static_cast<int64_t>(tail_len - kEndLen); i >= 0; --i) {
    const unsigned char* p = tail.data() + i;
    if (u32(p) == kEndSig && i + kEndLen + u16(p + 20) == tail_len) {
      at = i;
      break;
    }
  }
  if (at < 0) throw Problem("no end-of-central-directory record (truncated, or not a zip archive)");
  const unsigned char* e = tail.data() + at;
  const uint64_t end_pos = n - tail_len + static_cast<uint64_t>(at);
  Directory d;
  if (u16(e + 4) != 0 || u16(e + 6) != 0) throw Problem("a multi-disk zip archive");
  d.entries = u16(e + 10);
  if (u16(e + 8) != d.entries) throw Problem("entry counts of the end record disagree");
  d.cd_size = u32(e + 12);
  d.cd_offset = u32(e + 16);
  d.cd_limit = end_pos;
  const bool zip64 = d.entries == 0xffff || d.cd_size == kMax32 || d.cd_offset == kMax32;
  if (end_pos >= kLocator64Len) {
    unsigned char loc[kLocator64Len];
    src.read(end_pos - kLocator64Len, kLocator64Len, loc);
    if (u32(loc) == kLocator64Sig) {
      const uint64_t e64 = u64(loc + 8);
      if (u32(loc + 4) != 0 || u32(loc + 16) > 1) throw Problem("a multi-disk zip64 archive");
      if (!inside(e64, kEnd64Len, end_pos - kLocator64Len))
        throw Problem("the zip64 end record's offset " + std::to_string(e64) + " lies outside the file");
      unsigned char r[kEnd64Len];
      src.read(e64, kEnd64Len, r);
      if (u32(r) != kEnd64Sig) throw Problem("no zip64 end record where its locator points");
      if (u32(r + 16) != 0 || u32(r + 20) != 0) throw Problem("a multi-disk zip64 archive");
      if (u64(r + 24) != u64(r + 32)) throw Problem("entry counts of the zip64 end record disagree");
      d.entries = u64(r + 32);
      d.cd_size = u64(r + 40);
      d.cd_offset = u64(r + 48);
      d.cd_limit = e64;
    } else if (zip64) {
      throw Problem("the end record asks for zip64 values but there is no zip64 locator");
    }
  }
  if (!inside(d.cd_offset, d.cd_size, d.cd_limit))
    throw Problem("the central directory (offset " + std::to_string(d.cd_offset) + ", " +
                  std::to_string(d.cd_size) + " bytes) lies outside the file");
  if (d.entries > d.cd_size / kCentralLen)
    throw Problem("the end record claims " + std::to_string(d.entries) + " entries, more than " +
                  std::to_string(d.cd_size) + " bytes of central directory can hold");
  return d;
}

std::string check_name(const std::string& name) {
  if (name.empty()) return "an entry with an empty name";
  if (name.size() > 4096) return "an entry name of " + std::to_string(name.size()) + " characters";
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f || c == '\\') return "an entry name with a control character or backslash";
  if (name[0] == '/') return "an absolute entry name '" + name + "'";
  if (("/" + name + "/").find("/../") != std::string::npos) return "an entry name with '..': '" + name + "'";
  return {};
}

// Reads the zip64 extended-information extra field: the 64-bit values of the fields that hold 0xffffffff.
void read_zip64_extra(const unsigned char* x, size_t len, Entry& e, bool usize64, bool csize64, bool off64) {
  size_t i = 0;
  while (i + 4 <= len) {
    const uint16_t id = u16(x + i), sz = u16(x + i + 2);
    if (i + 4 + sz > len) throw Problem("entry '" + e.name + "': an extra field runs past its header");
    if (id == 0x0001) {
      size_t k = i + 4;
      auto take = [&](uint64_t& v) {
        if (k + 8 > i + 4 + sz) throw Problem("entry '" + e.name + "': a short zip64 extra field");
        v = u64(x + k);
        k += 8;
      };
      if (usize64) take(e.usize);
      if (csize64) take(e.csize);
      if (off64) take(e.offset);
      return;
    }
    i += 4 + sz;
  }
  if (usize64 || csize64 || off64) throw Problem("entry '" + e.name + "' needs a zip64 extra field it lacks");
}

std::vector<Entry> read_entries(Source& src, const Directory& d, const ArchiveCheckOptions& opts) {
  if (d.entries == 0) throw Problem("an empty zip archive");
  if (d.entries > opts.max_entries)
    throw Problem(std::to_string(d.entries) + " entries (at most " + std::to_string(opts.max_entries) + ")");
  std::vector<unsigned char> cd(d.cd_size);
  src.read(d.cd_offset, d.cd_size, cd.data());
  std::vector<Entry> out;
  std::set<std::string> seen;
  uint64_t pos = 0;
  for (uint64_t k = 0; k < d.entries; ++k) {
    if (!inside(pos, kCentralLen, d.cd_size)) throw Problem("the central directory ends inside entry " + std::to_string(k));
    const unsigned char* h = cd.data() + pos;
    if (u32(h) != kCentralSig) throw Problem("central-directory entry " + std::to_string(k) + " has a bad signature");
    Entry e;
    e.flags = u16(h + 8);
    e.method = u16(h + 10);
    e.crc = u32(h + 16);
    e.csize = u32(h + 20);
    e.usize = u32(h + 24);
    const uint64_t nlen = u16(h + 28), xlen = u16(h + 30), clen = u16(h + 32);
    e.offset = u32(h + 42);
    if (!inside(pos + kCentralLen, nlen + xlen + clen, d.cd_size))
      throw Problem("central-directory entry " + std::to_string(k) + " runs past the directory");
    e.name.assign(reinterpret_cast<const char*>(h + kCentralLen), nlen);
    const std::string bad = check_name(e.name);
    if (!bad.empty()) throw Problem(bad);
    if (u16(h + 34) != 0) throw Problem("entry '" + e.name + "' is on another disk");
    read_zip64_extra(h + kCentralLen + nlen, xlen, e, e.usize == kMax32, e.csize == kMax32, e.offset == kMax32);
    if (e.flags & 0x41) throw Problem("entry '" + e.name + "' is encrypted");
    if (e.method != 0 && e.method != 8)
      throw Problem("entry '" + e.name + "' uses compression method " + std::to_string(e.method) +
                    " (LibTorch reads stored or deflated records)");
    if (e.method == 0 && e.csize != e.usize)
      throw Problem("stored entry '" + e.name + "' has compressed size " + std::to_string(e.csize) +
                    " but size " + std::to_string(e.usize));
    if (!seen.insert(e.name).second) throw Problem("entry '" + e.name + "' appears twice");
    out.push_back(std::move(e));
    pos += kCentralLen + nlen + xlen + clen;
  }
  if (pos != d.cd_size)
    throw Problem("the central directory holds " + std::to_string(d.cd_size - pos) + " bytes after its " +
                  std::to_string(d.entries) + " entries");
  return out;
}

void check_layout(Source& src, std::vector<Entry>& entries, const Directory& d) {
  for (auto& e : entries) {
    if (!inside(e.offset, kLocalLen, d.cd_offset))
      throw Problem("entry '" + e.name + "': local header offset " + std::to_string(e.offset) +
                    " lies outside the data area (" + std::to_string(d.cd_offset) + " bytes)");
    unsigned char h[kLocalLen];
    src.read(e.offset, kLocalLen, h);
    if (u32(h) != kLocalSig) throw Problem("entry '" + e.name + "': no local header at offset " + std::to_string(e.offset));
    const uint64_t nlen = u16(h + 26), xlen = u16(h + 28);
    if (u16(h + 8) != e.method) throw Problem("entry '" + e.name + "': local and central compression methods differ");
    if (!inside(e.offset + kLocalLen, nlen + xlen, d.cd_offset))
      throw Problem("entry '" + e.name + "': its local header runs into the central directory");
    std::string lname(nlen, '\0');
    src.read(e.offset + kLocalLen, nlen, reinterpret_cast<unsigned char*>(&lname[0]));
    if (lname != e.name) throw Problem("entry '" + e.name + "': its local header names '" + lname.substr(0, 200) + "'");
    e.data_start = e.offset + kLocalLen + nlen + xlen;
    if (!inside(e.data_start, e.csize, d.cd_offset))
      throw Problem("entry '" + e.name + "': its " + std::to_string(e.csize) + " bytes at offset " +
                    std::to_string(e.data_start) + " run past the data area (" + std::to_string(d.cd_offset) + " bytes)");
  }
  std::vector<const Entry*> by_off;
  for (const auto& e : entries) by_off.push_back(&e);
  std::sort(by_off.begin(), by_off.end(), [](const Entry* a, const Entry* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_off.size(); ++i)
    if (by_off[i - 1]->data_start + by_off[i - 1]->csize > by_off[i]->offset)
      throw Problem("entries '" + by_off[i - 1]->name + "' and '" + by_off[i]->name + "' overlap");
}

std::string check_records(const std::vector<Entry>& entries, ArchiveReport& rep) {
  const std::string& first = entries.front().name;
  const auto slash = first.find('/');
  if (slash == std::string::npos || slash == 0) throw Problem("entry '" + first + "' is not inside a top folder");
  rep.prefix = first.substr(0, slash);
  const std::string pre = rep.prefix + "/";
  std::set<std::string> names;
  for (const auto& e : entries) {
    if (e.name.compare(0, pre.size(), pre) != 0)
      throw Problem("entry '" + e.name + "' is outside the archive's folder '" + rep.prefix + "'");
    names.insert(e.name);
    rep.names.push_back(e.name);
  }
  if (!names.count(pre + "data.pkl")) throw Problem("no '" + pre + "data.pkl' record");
  if (!names.count(pre + "version") && !names.count(pre + ".data/version")) throw Problem("no '" + pre + "version' record");
  return pre;
}

bool is_storage(const std::string& name, const std::string& pre) {
  const std::string dir = pre + "data/";
  if (name.size() <= dir.size() || name.compare(0, dir.size(), dir) != 0) return false;
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(dir.size()), name.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// The record's CRC32 over its (inflated) bytes, read in bounded chunks; a deflate stream must end exactly
// at the entry's compressed size and yield exactly its size.
bool crc_matches(Source& src, const Entry& e) {
  constexpr size_t kChunk = 1 << 20;
  std::vector<unsigned char> in(std::min<uint64_t>(kChunk, std::max<uint64_t>(e.csize, 1)));
  uLong crc = crc32_z(0L, Z_NULL, 0);
  if (e.method == 0) {
    for (uint64_t done = 0; done < e.csize;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(in.size(), e.csize - done));
      src.read(e.data_start + done, n, in.data());
      crc = crc32_z(crc, in.data(), n);
      done += n;
    }
    return static_cast<uint32_t>(crc) == e.crc;
  }
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) throw Problem("zlib cannot start inflating");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  std::vector<unsigned char> out(kChunk);
  uint64_t done = 0, produced = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (z.avail_in == 0 && done < e.csize) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(in.size(), e.csize - done));
      src.read(e.data_start + done, n, in.data());
      done += n;
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(n);
    }
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    // Z_BUF_ERROR: no progress possible, i.e. every byte read and output room left, the stream unfinished
    if (rc == Z_BUF_ERROR) throw Problem("deflated entry '" + e.name + "' ends before its stream does");
    if (rc != Z_OK && rc != Z_STREAM_END)
      throw Problem("deflated entry '" + e.name + "' is not a valid deflate stream");
    const size_t got = out.size() - z.avail_out;
    produced += got;
    if (produced > e.usize)
      throw Problem("deflated entry '" + e.name + "' inflates to more than its recorded " + std::to_string(e.usize) + " bytes");
    crc = crc32_z(crc, out.data(), got);
  }
  if (z.avail_in != 0 || done != e.csize)
    throw Problem("deflated entry '" + e.name + "' has bytes after its stream");
  if (produced != e.usize)
    throw Problem("deflated entry '" + e.name + "' inflates to " + std::to_string(produced) + " bytes, not its recorded " +
                  std::to_string(e.usize));
  return static_cast<uint32_t>(crc) == e.crc;
}

ArchiveReport check(Source& src, const ArchiveCheckOptions& opts) {
  ArchiveReport rep;
  const Directory d = find_directory(src);
  auto entries = read_entries(src, d, opts);
  check_layout(src, entries, d);
  const std::string pre = check_records(entries, rep);
  if (opts.verify_crc)
    for (const auto& e : entries) {
      if (crc_matches(src, e)) continue;
      if (opts.defer_storage_crc && is_storage(e.name, pre)) {
        rep.bad_storage.push_back(e.name);
        continue;
      }
      throw Problem("record '" + e.name + "' does not match its CRC32 (the file is damaged)");
    }
  return rep;
}

[[noreturn]] void refuse(const ArchiveCheckOptions& opts, const std::string& label, const std::string& what) {
  throw std::runtime_error(opts.kind + " '" + label + "' is not a sound LibTorch archive: " + what +
                           " (refused before LibTorch reads it)");
}

}  // namespace

ArchiveReport check_torch_archive_file(const std::string& path, const ArchiveCheckOptions& opts) {
  try {
    FileSource src(path);
    return check(src, opts);
  } catch (const Problem& p) {
    refuse(opts, path, p.what());
  } catch (const std::bad_alloc&) {
    refuse(opts, path, "out of memory while reading its directory");
  }
}

ArchiveReport check_torch_archive_bytes(const std::string& bytes, const std::string& label,
                                        const ArchiveCheckOptions& opts) {
  try {
    MemorySource src(bytes);
    return check(src, opts);
  } catch (const Problem& p) {
    refuse(opts, label, p.what());
  } catch (const std::bad_alloc&) {
    refuse(opts, label, "out of memory while reading its directory");
  }
}

}  // namespace autoqnn
