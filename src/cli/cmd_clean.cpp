// autoqnn clean: removes what interrupted runs left in a directory: temporaries of processes that no longer
// exist ("<file>.autoqnn-tmp.<pid>") and lock files no process holds ("<file>.autoqnn-lock").
#include <iostream>

#include "autoqnn/output_files.h"
#include "cli.h"

namespace autoqnn::cli {
namespace {

int run_clean(const std::vector<std::string>& args) {
  std::string dir = ".";
  bool recursive = false;
  po::options_description desc("clean options");
  desc.add_options()("dir", po::value(&dir)->default_value(dir), "directory to clean (also the positional argument)")(
      "recursive,r", po::bool_switch(&recursive), "also the directories below it");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  if (!parse("clean", "[DIR] [--recursive]", desc, args, vm, &pos)) return 0;
  auto removed = clean_stale_files(dir, recursive);
  for (const auto& p : removed) std::cout << "removed " << p << "\n";
  std::cout << removed.size() << " stale file(s) removed from " << dir << "\n";
  return 0;
}

}  // namespace

AUTOQNN_VERB("clean", "remove the temporaries and lock files that interrupted runs left in a directory", run_clean);

}  // namespace autoqnn::cli
