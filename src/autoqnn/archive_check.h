// A bounded check of a LibTorch zip archive (checkpoint, search state, TorchScript model) before LibTorch
// parses it. LibTorch 1.13's reader trusts the zip's offsets and never compares the records' CRC32s, and
// its TorchScript importer crashes (SEGV) on some damaged records (fuzz/known_crashes/); every archive is
// therefore read here first: the end-of-central-directory record (zip64 too), every entry's sizes and
// offsets inside the file, local headers consistent with the central directory, no overlapping entries,
// sane names, the records LibTorch needs (<prefix>/data.pkl, <prefix>/version or .data/version), and each
// record's CRC32 (stored and deflated entries). Errors name the file and what is wrong.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace autoqnn {

struct ArchiveCheckOptions {
  std::string kind = "archive";  // how errors name the file: "checkpoint", "TorchScript file", ...
  bool verify_crc = true;        // read every record and compare it with its CRC32
  // A damaged tensor-storage record (<prefix>/data/<n>) is raw bytes LibTorch never parses: report it in
  // ArchiveReport::bad_storage instead of throwing, so a caller with per-tensor checksums can name the
  // tensor. Every other record (pickles, code, version) must match its CRC32 regardless.
  bool defer_storage_crc = false;
  uint64_t max_entries = 1u << 20;  // more records than this is refused (a hostile count)
};

struct ArchiveReport {
  std::string prefix;                    // the archive's top folder ("archive" for torch::save's)
  std::vector<std::string> names;        // every record, in central-directory order
  std::vector<std::string> bad_storage;  // storage records whose CRC32 differs (defer_storage_crc only)
};

// Throws std::runtime_error "<kind> '<label>' is not a sound LibTorch archive: <what> (...)".
ArchiveReport check_torch_archive_file(const std::string& path, const ArchiveCheckOptions& opts = {});
ArchiveReport check_torch_archive_bytes(const std::string& bytes, const std::string& label,
                                        const ArchiveCheckOptions& opts = {});

}  // namespace autoqnn
