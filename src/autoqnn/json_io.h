// Reading JSON files the project takes from users (policies, search spaces, schemas, checkpoint
// metadata): bounded before the parser or any recursive walk sees them, strict about duplicate keys, and
// with errors that name the file, line, column and key.
#pragma once
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace autoqnn {

struct JsonError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct JsonLimits {
  size_t max_bytes = size_t(64) << 20;  // the whole text
  int max_depth = 64;                   // nested arrays / objects (ours need < 10)
  size_t max_key = 1024;                // characters of an object key (a layer name)
  size_t max_string = 16384;            // characters of a string value
};

// Parses `text`; `source` names it in errors ("policy.json", "checkpoint 'x.pt' metadata"). Throws
// JsonError: "<source>:<line>:<col>: malformed JSON (line L, column C): ...", nesting / key / string
// limits with their line, "duplicate key 'k' in <path>", numbers out of range with their key path.
nlohmann::json parse_json_text(const std::string& text, const std::string& source, const JsonLimits& limits = {});
// read_text_file + parse_json_text.
nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits = {});

}  // namespace autoqnn
