#include "search/search_method.h"

#include <stdexcept>

#include "search/ilp.h"
#include "search/qpl.h"
#include "search/qss.h"
#include "search/qss_qpl.h"
#include "search/search_driver.h"

namespace autoqnn::search {

// The table: one row per method, in the order `autoqnn search --help` lists them.
const std::vector<SearchMethod>& search_method_table() {
  static const std::vector<SearchMethod> rows = {qss_method(), qpl_method(), qss_qpl_method(), ilp_method()};
  return rows;
}

const SearchMethod& search_method(const std::string& name) {
  for (const auto& m : search_method_table())
    if (m.name == name) return m;
  std::string v;
  for (const auto& m : search_methods()) v += (v.empty() ? "" : ", ") + m;
  throw std::invalid_argument("unknown search method '" + name + "' (valid: " + v + ")");
}

std::vector<std::string> search_methods() {
  std::vector<std::string> out;
  for (const auto& m : search_method_table()) out.push_back(m.name);
  return out;
}

std::unique_ptr<SearchStrategy> make_strategy(const std::string& method, ModelPtr model, const SearchSpace& space,
                                              const StrategyOptions* options) {
  const SearchMethod& m = search_method(method);
  if (!m.make)
    throw std::invalid_argument("search method '" + method + "' runs several searches, not one strategy");
  return m.make(std::move(model), space, options);
}

SearchResult run_method(const SearchOptions& opt) {
  const SearchMethod& m = search_method(opt.method);
  return m.run ? m.run(opt) : run_search(opt);
}

std::vector<MethodFlag> all_method_flags() {
  std::vector<MethodFlag> out;
  for (const auto& m : search_method_table())
    for (const auto& f : m.flags) {
      bool seen = false;
      for (const auto& o : out) seen = seen || o.name == f.name;
      if (!seen) out.push_back(f);
    }
  return out;
}

const std::string& FlagValues::text(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) throw std::logic_error("flag --" + name + " is not declared by the method");
  return it->second;
}

namespace {
// The whole text as a number of type T (std::stod / std::stoi), or an error naming the flag.
template <class T, class Parse>
T parse_flag(const std::string& name, const std::string& t, Parse parse, const char* what) {
  try {
    size_t used = 0;
    T v = parse(t, &used);
    if (used == t.size()) return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument("--" + name + ": '" + t + "' is not " + what);
}
}  // namespace

double FlagValues::number(const std::string& name) const {
  return parse_flag<double>(name, text(name), [](const std::string& t, size_t* n) { return std::stod(t, n); },
                            "a number");
}

int FlagValues::integer(const std::string& name) const {
  return parse_flag<int>(name, text(name), [](const std::string& t, size_t* n) { return std::stoi(t, n); },
                         "an integer");
}

}  // namespace autoqnn::search
