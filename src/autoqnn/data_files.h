// Run-time data files (configs/policy.schema.json, configs/search_space/*.json): every verb finds them the
// same way, whether autoqnn runs from the source tree, a build tree, an installed prefix or a moved one.
#pragma once
#include <string>
#include <vector>

namespace autoqnn {

// Where `rel` is looked for, in order: `rel` itself (absolute, or relative to the working directory); then,
// for a relative `rel` only, the installed data dir (<install prefix>/share/autoqnn/rel, compiled in), the
// data dir next to the executable (<exe dir>/../share/autoqnn/rel: an install moved to another prefix) and
// the source tree (runs from a build tree). Duplicates are listed once.
std::vector<std::string> data_file_locations(const std::string& rel);
// The first of data_file_locations(rel) that is a readable file ("" when none is). `rel` itself is
// returned unchanged when it exists.
std::string locate_data_file(const std::string& rel);
// locate_data_file, but throws std::runtime_error naming `rel` and every place it looked in.
std::string find_data_file(const std::string& rel);
// A search space by path or by short name: a name without '/' that does not end in ".json" and is no file
// in the working directory means configs/search_space/<name>.json ("lowbit"). Throws
// std::runtime_error("cannot open search space '<name>' (see configs/search_space/): ...") naming the places
// it looked in.
std::string find_search_space(const std::string& name_or_path);

}  // namespace autoqnn
