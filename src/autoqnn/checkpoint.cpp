#include "autoqnn/checkpoint.h"

#include <zlib.h>

#include <cstring>
#include <map>

#include <fstream>
#include <set>
#include <sstream>

#include "autoqnn/archive_check.h"
#include "autoqnn/checkpoint_classes.h"
#include "autoqnn/data_folder.h"
#include "autoqnn/json_io.h"
#include "autoqnn/output_files.h"
#include "autoqnn/runtime.h"
#include "autoqnn/torchscript_model.h"

namespace autoqnn {

namespace {
const char* kMetaKey = "__autoqnn_meta__";
// Metadata key of the per-tensor checksums: {"algorithm": "crc32", "tensors": {name: crc32 of its bytes}}.
// LibTorch's zip reader does not check the archive's own CRCs, so a flipped byte would load silently.
const char* kChecksumKey = "checksums";

uint32_t tensor_crc32(const torch::Tensor& t) {
  torch::Tensor c = t.cpu().contiguous();
  return static_cast<uint32_t>(::crc32_z(::crc32_z(0L, Z_NULL, 0), static_cast<const Bytef*>(c.data_ptr()),
                                         static_cast<z_size_t>(c.nbytes())));
}

nlohmann::json parse_meta(const std::string& text, const std::string& path) {
  try {
    return parse_json_text(text, "checkpoint '" + path + "' metadata");
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "': metadata is not valid JSON (" + e.what() + ")");
  }
}
const char* kScriptKey = "__torchscript__";  // an imported model's original TorchScript file (uint8 bytes)

// The archive is checked (archive_check.h) before LibTorch parses it: LibTorch's importer crashes on some
// damaged records. Damaged tensor storage is left to the per-tensor checksums, which name the tensor;
// `bad_storage` keeps what they cannot attribute.
struct Archive {
  torch::serialize::InputArchive ar;
  std::vector<std::string> bad_storage;
  // A damaged storage record no tensor check caught (an old file without checksums, optimizer state).
  void refuse_bad_storage(const std::string& path) const {
    if (!bad_storage.empty())
      throw std::runtime_error("checkpoint '" + path + "' is corrupt: record '" + bad_storage.front() +
                               "' does not match its CRC32 (damaged file; restore it or retrain)");
  }
};

// Tensors are mapped to `device` while reading (default CPU): a checkpoint written on a GPU (its optimizer
// state lives there) loads on a CPU-only LibTorch, and a CPU one on a GPU.
Archive open_archive(const std::string& path, torch::Device device = torch::kCPU) {
  if (!file_exists(path)) throw std::runtime_error("checkpoint '" + path + "' does not exist");
  ArchiveCheckOptions opts;
  opts.kind = "checkpoint";
  opts.defer_storage_crc = true;
  Archive a;
  a.bad_storage = check_torch_archive_file(path, opts).bad_storage;
  try {
    a.ar.load_from(path, device);
  } catch (const c10::Error& e) {
    throw std::runtime_error("checkpoint '" + path + "' is corrupt or not a LibTorch archive (" +
                             std::string(e.what_without_backtrace()).substr(0, 200) + ")");
  }
  return a;
}
}  // namespace

nlohmann::json CheckpointMeta::to_json() const {
  nlohmann::json j;
  j["format"] = "autoqnn-checkpoint";
  j["format_version"] = 1;
  j["kind"] = kind;
  j["model"] = model;
  j["config"] = {{"in_channels", config.in_channels}, {"image_size", config.image_size},
                 {"num_classes", config.num_classes}};
  j["dataset"] = dataset;
  j["policy"] = policy;
  j["epoch"] = epoch;
  j["extra"] = extra;
  j["version"] = AUTOQNN_VERSION;
  return j;
}

CheckpointMeta CheckpointMeta::from_json(const nlohmann::json& j, const std::string& path) {
  CheckpointMeta m;
  try {
    if (j.value("format", "") != "autoqnn-checkpoint")
      throw std::runtime_error("missing format tag");
    m.kind = j.at("kind").get<std::string>();
    m.model = j.at("model").get<std::string>();
    const auto& c = j.at("config");
    m.config.in_channels = c.at("in_channels").get<int64_t>();
    m.config.image_size = c.at("image_size").get<int64_t>();
    m.config.num_classes = c.at("num_classes").get<int64_t>();
    m.dataset = j.value("dataset", "");
    m.policy = j.value("policy", nlohmann::json());
    m.epoch = j.value("epoch", int64_t{0});
    m.extra = j.value("extra", nlohmann::json());
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "': bad metadata (" + e.what() + ")");
  }
  return m;
}

void save_checkpoint(const std::string& path, torch::nn::Module& model, const CheckpointMeta& meta,
                     torch::optim::Optimizer* optimizer) {
  torch::serialize::OutputArchive ar;
  nlohmann::json crcs = nlohmann::json::object();
  for (const auto& p : model.named_parameters(true)) {
    auto t = p.value().detach().cpu();
    crcs[p.key()] = tensor_crc32(t);
    ar.write(p.key(), t, false);
  }
  for (const auto& b : model.named_buffers(true)) {
    auto t = b.value().detach().cpu();
    crcs[b.key()] = tensor_crc32(t);
    ar.write(b.key(), t, true);
  }
  nlohmann::json mj = meta.to_json();
  if (is_folder_dataset(meta.dataset)) {  // the labels' names, for eval and for the user (checkpoint_classes.h)
    try {
      mj["config"]["classes"] = folder_class_names(meta.dataset);
    } catch (const std::exception& e) {
      log_warn("checkpoint '" + path + "': class names not recorded (" + e.what() + ")");
    }
  }
  mj[kChecksumKey] = {{"algorithm", "crc32"}, {"tensors", crcs}};
  ar.write(kMetaKey, c10::IValue(mj.dump()));
  if (auto* ts = dynamic_cast<TorchScriptModel*>(&model)) {
    const auto& b = ts->source_bytes();
    auto t = torch::empty({static_cast<int64_t>(b.size())}, torch::kUInt8);
    std::memcpy(t.data_ptr(), b.data(), b.size());
    ar.write(kScriptKey, t, /*is_buffer=*/true);
  }
  if (optimizer) {
    torch::serialize::OutputArchive opt;
    optimizer->save(opt);
    ar.write("__optimizer__", opt);
  }
  // Serialised in memory, then written with every error checked: LibTorch's file writer throws from its
  // destructor on a short write (disk full, file-size limit), which ends the process.
  std::ostringstream bytes;
  ar.save_to(bytes);
  const std::string data = bytes.str();
  atomic_write(path, [&](const std::string& tmp) { write_file_bytes(tmp, data.data(), data.size()); });
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  if (is_torchscript_file(path)) {
    // A user's TorchScript file is its own FP32 starting point; the input config comes from the caller
    // (zeros here: "the data's").
    CheckpointMeta m;
    m.kind = "fp32";
    m.model = path;
    m.config = ModelConfig{0, 0, 0};
    return m;
  }
  auto a = open_archive(path);  // damaged tensor storage does not affect the metadata
  c10::IValue v;
  if (!a.ar.try_read(kMetaKey, v) || !v.isString())
    throw std::runtime_error("checkpoint '" + path + "' has no AutoQNN metadata (not written by autoqnn?)");
  return CheckpointMeta::from_json(parse_meta(v.toStringRef(), path), path);
}

std::string read_checkpoint_torchscript(const std::string& path) {
  auto a = open_archive(path);
  torch::Tensor t;
  if (!a.ar.try_read(kScriptKey, t, /*is_buffer=*/true)) return {};  // the weights' loader names a damaged tensor
  a.refuse_bad_storage(path);  // which record holds the script is not known: any damage refuses it
  t = t.contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
}

void load_checkpoint_weights(const std::string& path, torch::nn::Module& model) {
  torch::NoGradGuard ng;
  if (is_torchscript_file(path)) {  // the module's own parameters and buffers, by the same dotted names
    ArchiveCheckOptions opts;
    opts.kind = "TorchScript file";
    check_torch_archive_file(path, opts);
    auto src = torch::jit::load(path);
    std::map<std::string, torch::Tensor> have;
    for (const auto& p : src.named_parameters(true)) have[p.name] = p.value;
    for (const auto& b : src.named_buffers(true)) have[b.name] = b.value;
    auto copy = [&](const std::string& key, torch::Tensor& dst) {
      auto it = have.find(key);
      if (it == have.end())
        throw std::runtime_error("TorchScript file '" + path + "' lacks '" + key + "' (another model?)");
      if (it->second.sizes() != dst.sizes())
        throw std::runtime_error("TorchScript file '" + path + "': '" + key + "' has another shape than the model's");
      if (!it->second.is_same(dst)) dst.copy_(it->second.to(dst.device(), dst.scalar_type()));
    };
    for (auto& p : model.named_parameters(true)) copy(p.key(), p.value());
    for (auto& b : model.named_buffers(true)) copy(b.key(), b.value());
    return;
  }
  auto a = open_archive(path);
  auto& ar = a.ar;
  nlohmann::json crcs;
  {
    c10::IValue v;
    if (ar.try_read(kMetaKey, v) && v.isString()) {
      auto mj = parse_meta(v.toStringRef(), path);
      if (mj.contains(kChecksumKey) && mj[kChecksumKey].is_object()) crcs = mj[kChecksumKey].value("tensors", nlohmann::json());
    }
  }
  if (!crcs.is_object()) {
    static std::set<std::string> warned;  // once per file and process
    if (warned.insert(path).second)
      log_warn("checkpoint '" + path + "' has no checksums (written by an older autoqnn): corruption cannot be detected");
  }
  auto copy = [&](const std::string& key, torch::Tensor& dst, bool is_buffer) {
    torch::Tensor src;
    if (!ar.try_read(key, src, is_buffer))
      throw std::runtime_error("checkpoint '" + path + "' lacks '" + key +
                               "' (a checkpoint of another model, or saved without this policy?)");
    if (crcs.is_object()) {
      auto it = crcs.find(key);
      if (it == crcs.end() || !it->is_number_unsigned())
        throw std::runtime_error("checkpoint '" + path + "': no checksum recorded for tensor '" + key +
                                 "' (the file was altered)");
      if (tensor_crc32(src) != it->get<uint32_t>())
        throw std::runtime_error("checkpoint '" + path + "' is corrupt: tensor '" + key +
                                 "' does not match its CRC32 checksum (damaged file; restore it or retrain)");
    }
    if (src.sizes() != dst.sizes()) {
      std::ostringstream os;
      os << "checkpoint '" << path << "': '" << key << "' has shape " << src.sizes() << ", the model expects "
         << dst.sizes() << " (a checkpoint of another model?)";
      throw std::runtime_error(os.str());
    }
    dst.copy_(src.to(dst.device(), dst.scalar_type()));
  };
  for (auto& p : model.named_parameters(true)) copy(p.key(), p.value(), false);
  for (auto& b : model.named_buffers(true)) copy(b.key(), b.value(), true);
  a.refuse_bad_storage(path);
}

bool load_checkpoint_optimizer(const std::string& path, torch::optim::Optimizer& optimizer) {
  // the optimizer state goes where the parameters it updates are
  torch::Device dev = torch::kCPU;
  for (auto& g : optimizer.param_groups())
    if (!g.params().empty()) {
      dev = g.params()[0].device();
      break;
    }
  auto a = open_archive(path, dev);
  a.refuse_bad_storage(path);
  torch::serialize::InputArchive opt;
  if (!a.ar.try_read("__optimizer__", opt)) return false;
  optimizer.load(opt);
  return true;
}

std::vector<std::string> read_checkpoint_classes(const std::string& path) {
  if (is_torchscript_file(path)) return {};
  auto a = open_archive(path);  // the metadata only: damaged tensor storage does not matter here
  c10::IValue v;
  if (!a.ar.try_read(kMetaKey, v) || !v.isString()) return {};
  const auto j = parse_meta(v.toStringRef(), path);
  std::vector<std::string> names;
  if (!j.contains("config") || !j["config"].is_object() || !j["config"].contains("classes")) return names;
  const auto& c = j["config"]["classes"];
  if (!c.is_array()) throw std::runtime_error("checkpoint '" + path + "': bad metadata (config.classes is not a list)");
  for (const auto& n : c) {
    if (!n.is_string()) throw std::runtime_error("checkpoint '" + path + "': bad metadata (a class name is not a string)");
    names.push_back(n.get<std::string>());
  }
  return names;
}

}  // namespace autoqnn
