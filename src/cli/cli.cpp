#include "cli.h"

#include <cmath>
#include <iostream>

#include "autoqnn/data_folder.h"
#include "autoqnn/number_text.h"
#include "autoqnn/runtime.h"

namespace autoqnn::cli {

std::vector<Verb>& verbs() {
  static std::vector<Verb> v;
  return v;
}

namespace {
// The image-folder flags as given (declared by add_common_options; one verb per process).
struct FolderFlags {
  std::string image_size, mean, stddev;
  int64_t channels = 0;
  double val_fraction = 0;
  uint64_t split_seed = 0;
};
FolderFlags& folder_flags() {
  static FolderFlags f;
  return f;
}

// "1,2.5,3" -> numbers; a bad list is a usage error naming the flag.
std::vector<double> number_list(const std::string& flag, const std::string& text) {
  try {
    return parse_number_list(text, "--" + flag);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string(e.what()) + " (expected a comma list of numbers)");
  }
}

// Checks the image-folder flags and hands them to the folder reader (data_folder.h).
void apply_folder_flags(const std::string& dataset) {
  const FolderFlags& f = folder_flags();
  // They mean nothing for the other data sets: refuse them rather than ignore them.
  for (const auto& [flag, given] : {std::pair<const char*, bool>{"image-size", !f.image_size.empty()},
                                    {"mean", !f.mean.empty()}, {"std", !f.stddev.empty()}, {"channels", f.channels != 0},
                                    {"val-fraction", f.val_fraction != 0}, {"split-seed", f.split_seed != 0}})
    if (given && !is_folder_dataset(dataset))
      throw UsageError(std::string("--") + flag + " applies to --dataset folder:DIR only");
  FolderOptions o;
  if (!f.image_size.empty()) {
    auto v = number_list("image-size", f.image_size);
    if ((v.size() != 1 && v.size() != 2) || v[0] < 1 || v.back() < 1 || v[0] != std::floor(v[0]) ||
        v.back() != std::floor(v.back()))
      throw UsageError("--image-size '" + f.image_size + "': expected H or H,W (positive integers)");
    o.image_height = static_cast<int64_t>(v[0]);
    o.image_width = static_cast<int64_t>(v.back());
  }
  if (!f.mean.empty()) o.mean = number_list("mean", f.mean);
  if (!f.stddev.empty()) o.stddev = number_list("std", f.stddev);
  for (double x : o.stddev)
    if (!(x > 0)) throw UsageError("--std '" + f.stddev + "': values must be positive");
  if (f.channels != 0 && f.channels != 1 && f.channels != 3)
    throw UsageError("--channels must be 1 (gray) or 3 (RGB), got " + std::to_string(f.channels));
  o.channels = f.channels;
  if (f.val_fraction != 0 && !(f.val_fraction > 0 && f.val_fraction < 1))
    throw UsageError("--val-fraction must be inside (0, 1), got " + std::to_string(f.val_fraction));
  o.val_fraction = f.val_fraction;
  o.split_seed = f.split_seed;
  set_folder_options(o);
}
}  // namespace

DataOptions CommonOptions::data_options() const {
  apply_folder_flags(dataset);
  DataOptions d;
  d.dataset = dataset;
  d.data_dir = data_dir;
  d.train_limit = train_limit;
  d.test_limit = test_limit;
  d.seed = seed;
  return d;
}

ModelConfig CommonOptions::model_config() const {
  apply_folder_flags(dataset);
  auto info = dataset_info(dataset);
  ModelConfig m;
  m.in_channels = info.channels;
  m.image_size = info.height;
  m.num_classes = info.num_classes;
  if (is_folder_dataset(dataset)) {  // named classes and decoded images: the model must fit the data as it is
    if (num_classes > 0 && num_classes != info.num_classes)
      throw UsageError("--num-classes " + std::to_string(num_classes) + ": data set '" + dataset + "' has " +
                       std::to_string(info.num_classes) + " classes");
  }
  if (!input_shape.empty()) {
    const std::vector<double> v = number_list("input-shape", input_shape);
    const std::string shape = "--input-shape '" + input_shape + "': ";
    if (v.size() != 3) throw UsageError(shape + "expected C,H,W (three numbers), e.g. 3,32,32");
    for (double x : v)
      if (!(x >= 1) || x != std::floor(x) || x > 1e6)
        throw UsageError(shape + "each of C,H,W must be a positive integer, e.g. 3,32,32");
    if (v[1] != v[2]) throw UsageError(shape + "H and W differ; the models take square images (H == W)");
    m.in_channels = static_cast<int64_t>(v[0]);
    m.image_size = static_cast<int64_t>(v[1]);
    if (is_folder_dataset(dataset) && (m.in_channels != info.channels || m.image_size != info.height))
      throw UsageError("--input-shape " + input_shape + " does not fit data set '" + dataset + "', whose images are " +
                       std::to_string(info.channels) + "," + std::to_string(info.height) + "," +
                       std::to_string(info.width) + " (use --image-size / --channels to bring them to the model's input)");
  }
  if (num_classes < 0) throw UsageError("--num-classes must be positive");
  if (num_classes > 0) m.num_classes = num_classes;
  return m;
}

void add_common_options(po::options_description& desc, CommonOptions& c, bool with_model) {
  auto add = desc.add_options();
  if (with_model) add("model", po::value(&c.model)->default_value(c.model), "model name (see `autoqnn models`)");
  add("dataset", po::value(&c.dataset)->default_value(c.dataset), "fashion-mnist | cifar10 | synthetic | tensors:FILE.safetensors | folder:DIR");
  add("data-dir", po::value(&c.data_dir), "dataset directory (default: the dataset's standard location)");
  add("train-limit", po::value(&c.train_limit)->default_value(0), "use only the first N training images (0 = all)");
  add("test-limit", po::value(&c.test_limit)->default_value(0), "use only the first N test images (0 = all)");
  add("batch-size", po::value(&c.batch_size)->default_value(c.batch_size), "mini-batch size");
  add("seed", po::value(&c.seed)->default_value(c.seed), "random seed (runs are repeatable on CPU)");
  add("threads", po::value(&c.threads)->default_value(0), "intra-op threads (0 = number of cores)");
  add("device", po::value(&c.device)->default_value(c.device), "cpu | cuda | cuda:N");
  add("input-shape", po::value(&c.input_shape), "C,H,W of one input image (imported models; default: the dataset's)");
  add("num-classes", po::value(&c.num_classes), "number of classes (imported models; default: the dataset's)");
  FolderFlags& f = folder_flags();
  add("image-size", po::value(&f.image_size), "folder:DIR: resize every image to H[,W] (bilinear)");
  add("mean", po::value(&f.mean), "folder:DIR: per-channel mean on [0,1] to subtract, e.g. 0.5,0.5,0.5 (default 0)");
  add("std", po::value(&f.stddev), "folder:DIR: per-channel std on [0,1] to divide by (default 1)");
  add("channels", po::value(&f.channels), "folder:DIR: 1 (gray) | 3 (RGB) (default: the images' own)");
  add("val-fraction", po::value(&f.val_fraction), "folder:DIR without train/ test/: test share per class (default 0.2)");
  add("split-seed", po::value(&f.split_seed), "folder:DIR: seed of the train/test split and file order (default 0)");
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
