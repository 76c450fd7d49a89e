#include "cli.h"

#include <iostream>

#include "autoqnn/runtime.h"

namespace autoqnn::cli {

std::vector<Verb>& verbs() {
  static std::vector<Verb> v;
  return v;
}

DataOptions CommonOptions::data_options() const {
  DataOptions d;
  d.dataset = dataset;
  d.data_dir = data_dir;
  d.train_limit = train_limit;
  d.test_limit = test_limit;
  d.seed = seed;
  return d;
}

ModelConfig CommonOptions::model_config() const {
  auto info = dataset_info(dataset);
  ModelConfig m;
  m.in_channels = info.channels;
  m.image_size = info.height;
  m.num_classes = info.num_classes;
  return m;
}

void add_common_options(po::options_description& desc, CommonOptions& c, bool with_model) {
  auto add = desc.add_options();
  if (with_model) add("model", po::value(&c.model)->default_value(c.model), "model name (see `autoqnn models`)");
  add("dataset", po::value(&c.dataset)->default_value(c.dataset), "fashion-mnist | cifar10 | synthetic");
  add("data-dir", po::value(&c.data_dir), "dataset directory (default: the dataset's standard location)");
  add("train-limit", po::value(&c.train_limit)->default_value(0), "use only the first N training images (0 = all)");
  add("test-limit", po::value(&c.test_limit)->default_value(0), "use only the first N test images (0 = all)");
  add("batch-size", po::value(&c.batch_size)->default_value(c.batch_size), "mini-batch size");
  add("seed", po::value(&c.seed)->default_value(c.seed), "random seed (runs are repeatable on CPU)");
  add("threads", po::value(&c.threads)->default_value(0), "intra-op threads (0 = number of cores)");
  add("device", po::value(&c.device)->default_value(c.device), "cpu | cuda | cuda:N");
}

torch::Device setup_runtime(const CommonOptions& c) {
  if (c.batch_size <= 0) throw UsageError("--batch-size must be positive, got " + std::to_string(c.batch_size));
  if (c.train_limit < 0) throw UsageError("--train-limit must be >= 0");
  if (c.test_limit < 0) throw UsageError("--test-limit must be >= 0");
  if (c.threads < 0) throw UsageError("--threads must be >= 0");
  auto device = resolve_device(c.device);
  int t = init_threads(c.threads);
  seed_everything(c.seed);
  log_info("threads " + std::to_string(t) + ", device " + device.str() + ", seed " + std::to_string(c.seed));
  return device;
}

po::options_description_easy_init PathOption::add(po::options_description& desc, const char* help, Need need) {
  auto* v = po::value(&path);
  if (need == Need::Required) v->required();
  return desc.add_options()(flag, v, help);
}

po::options_description_easy_init CalibBatchOptions::add(po::options_description& desc, const char* help) {
  return desc.add_options()("calib-batches", po::value(&batches)->default_value(batches), help);
}

void CalibBatchOptions::check() const {
  if (batches < 0) throw UsageError("--calib-batches must be >= 0");
}

bool parse(const std::string& verb, const std::string& synopsis, po::options_description& desc,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional) {
  desc.add_options()("help,h", "show this help");
  try {
    auto parser = po::command_line_parser(args).options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: autoqnn " << verb << " " << synopsis << "\n\n" << desc << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (see `autoqnn " + verb + " --help`)");
  }
  check_flag_values(vm);
  check_and_lock_outputs(vm);
  return true;
}

}  // namespace autoqnn::cli
