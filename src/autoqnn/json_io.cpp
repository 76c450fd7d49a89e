#include "autoqnn/json_io.h"

#include <set>
#include <vector>

#include "autoqnn/runtime.h"

namespace autoqnn {

using nlohmann::json;

namespace {

struct Position {
  int64_t line = 1, col = 1;
};
Position position_of(const std::string& text, size_t upto) {
  Position p;
  upto = std::min(upto, text.size());
  for (size_t i = 0; i < upto; ++i) {
    if (text[i] == '\n') {
      ++p.line;
      p.col = 1;
    } else {
      ++p.col;
    }
  }
  return p;
}

std::string where(const std::string& source, const std::string& text, size_t byte) {
  auto p = position_of(text, byte);
  return source + ":" + std::to_string(p.line) + ":" + std::to_string(p.col);
}

// One linear pass over the bytes: nesting depth and string lengths, so that neither the parser nor a later
// recursive walk (schema check, dump, destructor) or regex ever sees an unbounded input.
void prescan(const std::string& text, const std::string& source, const JsonLimits& lim) {
  if (text.size() > lim.max_bytes)
    throw JsonError(source + ": " + std::to_string(text.size()) + " bytes, more than the " +
                    std::to_string(lim.max_bytes) + " a JSON input may have");
  int depth = 0;
  bool in_string = false, escape = false;
  size_t start = 0, last_len = 0, last_start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') {
        in_string = false;
        last_len = i - start - 1;
        last_start = start;
        if (last_len > lim.max_string)
          throw JsonError(where(source, text, start) + ": a string of " + std::to_string(last_len) +
                          " characters (at most " + std::to_string(lim.max_string) + ")");
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        start = i;
        break;
      case ':':
        if (last_len > lim.max_key)
          throw JsonError(where(source, text, last_start) + ": a key of " + std::to_string(last_len) +
                          " characters (at most " + std::to_string(lim.max_key) + ")");
        break;
      case '[':
      case '{':
        if (++depth > lim.max_depth)
          throw JsonError(where(source, text, i) + ": nested more than " + std::to_string(lim.max_depth) +
                          " levels deep");
        break;
      case ']':
      case '}':
        --depth;
        break;
      default:
        break;
    }
  }
}

// The key path of the value being parsed ("layers.conv1.weight"), kept by the parser callback.
struct Frame {
  bool object = false;
  std::set<std::string> keys;
  std::string key;
  int64_t index = -1;
};
std::string path_of(const std::vector<Frame>& st) {
  std::string p;
  for (const auto& f : st) {
    if (f.object) {
      if (f.key.empty()) continue;
      p += (p.empty() ? "" : ".") + f.key;
    } else if (f.index >= 0) {
      p += "[" + std::to_string(f.index) + "]";
    }
  }
  return p.empty() ? "(top level)" : p;
}

}  // namespace

json parse_json_text(const std::string& text, const std::string& source, const JsonLimits& limits) {
  prescan(text, source, limits);
  std::vector<Frame> st;
  auto value_done = [&] {
    if (!st.empty() && !st.back().object) ++st.back().index;
  };
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (!st.empty() && !st.back().object) ++st.back().index;
        st.push_back(Frame{ev == json::parse_event_t::object_start, {}, {}, -1});
        break;
      case json::parse_event_t::key: {
        const std::string k = parsed.get<std::string>();
        if (!st.back().keys.insert(k).second) {
          st.back().key.clear();
          throw JsonError(source + ": duplicate key '" + k + "' in " + path_of(st) +
                          " (each key may appear once; JSON readers differ on which one wins)");
        }
        st.back().key = k;
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        st.pop_back();
        break;
      case json::parse_event_t::value:
        value_done();
        break;
    }
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (const json::parse_error& e) {
    const size_t upto = e.byte > 0 ? e.byte - 1 : 0;
    auto p = position_of(text, upto);
    std::string what = e.what();
    auto pos = what.find(": ", what.find("parse error"));
    std::string detail = pos == std::string::npos ? what : what.substr(pos + 2);
    if (text.empty()) detail = "the file is empty";
    throw JsonError(source + ":" + std::to_string(p.line) + ":" + std::to_string(p.col) + ": malformed JSON (line " +
                    std::to_string(p.line) + ", column " + std::to_string(p.col) + "): " + detail);
  } catch (const json::out_of_range& e) {
    // e.g. 406 "number overflow parsing '1e999'": no byte position, so the key path and the token's line
    std::string what = e.what();
    std::string token;
    auto q1 = what.find('\''), q2 = what.rfind('\'');
    if (q1 != std::string::npos && q2 > q1) token = what.substr(q1 + 1, q2 - q1 - 1);
    std::string at = source;
    if (!token.empty()) {
      auto byte = text.find(token);
      if (byte != std::string::npos) at = where(source, text, byte);
    }
    throw JsonError(at + ": number " + (token.empty() ? "" : "'" + token + "' ") + "at " + path_of(st) +
                    " is out of range (not representable as a double)");
  }
}

json read_json_file(const std::string& path, const JsonLimits& limits) {
  return parse_json_text(read_text_file(path), path, limits);
}

}  // namespace autoqnn
