// The search methods: one table row each (FAISS-style registry), so the driver, the CLI and the state
// reader know no method by name. A row says how to build the method's typed options (from the CLI flags
// it declares, or from their JSON form in a state file), how to build its strategy, and, for a method that
// is more than one search (qss+qpl), how to run it.
//
// Adding a method = one file (options, strategy, its row function) + one line in search_method.cpp.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "search/search_space.h"
#include "search/search_strategy.h"

namespace autoqnn::search {

struct SearchOptions;
struct SearchResult;

// A method-specific command-line flag (data only: the CLI registers it).
struct MethodFlag {
  std::string name;           // without "--", e.g. "tau-start"
  std::string help;
  std::string default_value;  // "" = no default
  bool is_switch = false;     // present = "1"
};

// The method flags of one command line: every declared flag's value (defaults included) and which were given.
struct FlagValues {
  std::map<std::string, std::string> values;
  std::set<std::string> given;
  bool has(const std::string& name) const { return given.count(name) > 0; }
  const std::string& text(const std::string& name) const;  // throws std::logic_error for an undeclared flag
  double number(const std::string& name) const;            // "--name: 'x' is not a number"
  int integer(const std::string& name) const;
  bool on(const std::string& name) const { return has(name) && text(name) != "0"; }
};

struct SearchMethod {
  std::string name;
  std::string summary;
  bool needs_supernet = false;  // candidates from a search space (else the space is only recorded)
  bool budget_lists = false;    // takes a front of budgets through its own flags (no --avg-bits needed)
  std::vector<MethodFlag> flags;
  std::function<StrategyOptionsPtr(const FlagValues&)> options_from_flags;
  std::function<StrategyOptionsPtr(const nlohmann::json&)> options_from_json;  // state files
  // One strategy; null for a method that is several searches (then `run` is set).
  std::function<std::unique_ptr<SearchStrategy>(ModelPtr, const SearchSpace&, const StrategyOptions*)> make;
  std::function<SearchResult(const SearchOptions&)> run;  // null = run_search
};

const std::vector<SearchMethod>& search_method_table();
// Throws std::invalid_argument listing the valid names.
const SearchMethod& search_method(const std::string& name);
std::vector<std::string> search_methods();

// The typed options of `method` (its own type) from the type-erased pointer; null = the defaults.
template <class T>
T options_as(const StrategyOptions* o, const std::string& method) {
  if (!o) return T();
  const T* t = dynamic_cast<const T*>(o);
  if (!t) throw std::invalid_argument("search method '" + method + "' was given the options of another method");
  return *t;
}

// The method's strategy for typed options (null = the method's defaults).
std::unique_ptr<SearchStrategy> make_strategy(const std::string& method, ModelPtr model, const SearchSpace& space,
                                              const StrategyOptions* options);
// Runs a search with the row of opt.method (run_search for single-strategy methods).
SearchResult run_method(const SearchOptions& opt);

// A flag declared by one method, looked up over the table (the CLI's view of all method flags, deduplicated).
std::vector<MethodFlag> all_method_flags();

}  // namespace autoqnn::search
