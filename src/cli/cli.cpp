#include "cli.h"

#include <iostream>
#include <sstream>

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
  if (!input_shape.empty()) {
    std::vector<int64_t> v;
    std::stringstream ss(input_shape);
    std::string tok;
    try {
      while (std::getline(ss, tok, ',')) v.push_back(std::stoll(tok));
    } catch (const std::exception&) {
      v.clear();
    }
    if (v.size() != 3 || v[0] <= 0 || v[1] <= 0 || v[1] != v[2])
      throw UsageError("--input-shape '" + input_shape + "': expected C,H,W with H == W (square images), e.g. 3,32,32");
    m.in_channels = v[0];
    m.image_size = v[1];
  }
  if (num_classes < 0) throw UsageError("--num-classes must be positive");
  if (num_classes > 0) m.num_classes = num_classes;
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
  add("input-shape", po::value(&c.input_shape), "C,H,W of one input image (imported models; default: the dataset's)");
  add("num-classes", po::value(&c.num_classes), "number of classes (imported models; default: the dataset's)");
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

// An imported model (--model PATH.pt) is its own FP32 starting point: a verb that requires --checkpoint gets
// the TorchScript file itself when none is given.
static std::vector<std::string> with_imported_checkpoint(const po::options_description& desc,
                                                         const std::vector<std::string>& args) {
  const auto* ck = desc.find_nothrow("checkpoint", false);
  if (!ck || !ck->semantic()->is_required()) return args;
  std::string model;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--checkpoint" || args[i].rfind("--checkpoint=", 0) == 0) return args;
    if (args[i] == "--model" && i + 1 < args.size()) model = args[i + 1];
    if (args[i].rfind("--model=", 0) == 0) model = args[i].substr(8);
  }
  if (model.empty() || !is_imported_model_name(model)) return args;
  auto out = args;
  out.push_back("--checkpoint");
  out.push_back(model);
  return out;
}

bool parse(const std::string& verb, const std::string& synopsis, po::options_description& desc,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional) {
  desc.add_options()("help,h", "show this help");
  try {
    auto parser = po::command_line_parser(with_imported_checkpoint(desc, args)).options(desc);
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
