// The thin CLI: each verb lives in its own cmd_*.cpp and registers itself; common flags are shared.
#pragma once
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "autoqnn/data.h"
#include "autoqnn/distributed.h"
#include "autoqnn/model.h"

namespace autoqnn::cli {

namespace po = boost::program_options;

// Usage error (bad/unknown option, missing required flag): exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using VerbFn = int (*)(const std::vector<std::string>& args);
struct Verb {
  std::string name, summary;
  VerbFn run;
};
std::vector<Verb>& verbs();
struct VerbRegistrar {
  VerbRegistrar(const char* name, const char* summary, VerbFn fn) { verbs().push_back({name, summary, fn}); }
};
#define AUTOQNN_VERB(name, summary, fn) static ::autoqnn::cli::VerbRegistrar _autoqnn_verb_##fn(name, summary, fn)

// The flags shared by every verb that reads data.
struct CommonOptions {
  std::string model = "lenet5";
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  int64_t batch_size = 128;
  uint64_t seed = 1;
  int threads = 0;
  std::string device = "cpu";
  std::string input_shape;  // "C,H,W" (imported models; default: the dataset's)
  int64_t num_classes = 0;  // imported models (0: the dataset's)
  DataOptions data_options() const;
  ModelConfig model_config() const;  // from the dataset's image shape, or --input-shape / --num-classes
};
void add_common_options(po::options_description& desc, CommonOptions& c, bool with_model = true);
// Applies --threads, --seed, checks --device; returns the device. Logs the set-up to stderr.
torch::Device setup_runtime(const CommonOptions& c);

// ---- option groups: a flag that several verbs share is declared here once, with its checks. The verb
// passes its own help text and whether the flag is required; add() returns desc.add_options() so that
// the verb's own options can follow in the same chain (the order of --help stays the verb's).
enum class Need { Required, Optional };

// A path flag, --<flag> PATH ("" when not given).
struct PathOption {
  const char* flag;
  std::string path;
  po::options_description_easy_init add(po::options_description& desc, const char* help,
                                        Need need = Need::Required);
};
// --checkpoint PATH: the checkpoint a verb reads.
struct CheckpointOptions : PathOption {
  CheckpointOptions() : PathOption{"checkpoint", {}} {}
};
// --policy PATH: a policy JSON to read.
struct PolicyOptions : PathOption {
  PolicyOptions() : PathOption{"policy", {}} {}
};
// --out PATH: what the verb writes.
struct OutputOptions : PathOption {
  OutputOptions() : PathOption{"out", {}} {}
};
// --calib-batches N: training mini-batches that calibrate data-dependent quantizer state.
struct CalibBatchOptions {
  int64_t batches;
  explicit CalibBatchOptions(int64_t default_batches) : batches(default_batches) {}
  // Declares the flag with `batches` as its default.
  po::options_description_easy_init add(po::options_description& desc, const char* help);
  void check() const;  // UsageError("--calib-batches must be >= 0") unless batches >= 0
};
// --rank --world-size --master-addr --master-port --dist-timeout --dist-backend: data-parallel runs
// (docs/distributed.md); unset flags come from RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT.
// init() joins the group (nothing with world size 1) and, with --threads 0, gives each local rank its share
// of the cores; defined in dist_options.cpp.
struct DistributedFlags {
  dist::DistOptions opt;
  po::options_description_easy_init add(po::options_description& desc);
  void init(const CommonOptions& c, torch::Device device) const;
};

// Run by parse() before any work (output_paths.cpp): every double flag finite (UsageError); every output
// flag (--out, --policy-out, --checkpoint-out, --state, --log) a writable file path that is none of the
// run's inputs nor another output, then locked against concurrent writers for the rest of the process.
void check_flag_values(const po::variables_map& vm);
void check_and_lock_outputs(const po::variables_map& vm);

// Parses `args` into `vm`. Returns false when --help was given (help already printed to stdout).
// Unknown options, bad values, missing required options -> UsageError naming the option.
bool parse(const std::string& verb, const std::string& synopsis, po::options_description& desc,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional = nullptr);

}  // namespace autoqnn::cli
