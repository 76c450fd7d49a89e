#include "autoqnn/torchscript_model.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "autoqnn/archive_check.h"
#include "autoqnn/runtime.h"
#include "autoqnn/torchscript_graph.h"

namespace autoqnn {

// ------------------------------------------------------------------ the operators
// Layer ids are process-wide (several imported models may live at once); a kernel finds its layer here.
namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<int64_t, ScriptQuantLayer*>& registry() {
  static std::map<int64_t, ScriptQuantLayer*> r;
  return r;
}
ScriptQuantLayer& layer_of(int64_t id) {
  std::lock_guard<std::mutex> g(registry_mutex());
  auto it = registry().find(id);
  TORCH_CHECK(it != registry().end(), "autoqnn: no imported layer with id ", id,
              " (a module rewritten by autoqnn was used after its model was destroyed)");
  return *it->second;
}

torch::Tensor quant_weight_op(const torch::Tensor& w, int64_t id) { return layer_of(id).quant_weight(w); }
torch::Tensor quant_act_op(const torch::Tensor& x, int64_t id) { return layer_of(id).quant_act(x); }
torch::Tensor observe_op(const torch::Tensor& y, int64_t id) {
  layer_of(id).observe(y);
  return y;
}
}  // namespace

// The kernels are differentiated through the ATen ops they call: gradients reach the weights (the
// quantizers' STE) and the quantizers' own parameters. Conservative alias analysis: the result depends on
// state outside the inputs (the layer's quantizer), and observe returns its input.
TORCH_LIBRARY(autoqnn, m) {
  m.def(torch::schema("autoqnn::quant_weight(Tensor w, int layer) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE));
  m.def(torch::schema("autoqnn::quant_act(Tensor x, int layer) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE));
  m.def(torch::schema("autoqnn::observe(Tensor y, int layer) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE));
}
TORCH_LIBRARY_IMPL(autoqnn, CompositeImplicitAutograd, m) {
  m.impl("quant_weight", quant_weight_op);
  m.impl("quant_act", quant_act_op);
  m.impl("observe", observe_op);
}

// ------------------------------------------------------------------ ScriptQuantLayer
ScriptQuantLayer::ScriptQuantLayer(std::string kind, torch::Tensor w, torch::Tensor b)
    : torch::nn::Module("ScriptQuantLayer"), kind_(std::move(kind)) {
  static std::atomic<int64_t> next_id{1};
  id_ = next_id++;
  weight = register_parameter("weight", w);
  if (b.defined()) bias = register_parameter("bias", std::move(b));
  std::lock_guard<std::mutex> g(registry_mutex());
  registry()[id_] = this;
}

ScriptQuantLayer::~ScriptQuantLayer() {
  std::lock_guard<std::mutex> g(registry_mutex());
  registry().erase(id_);
}

torch::Tensor ScriptQuantLayer::quant_act(const torch::Tensor& x) {
  if (record_shapes) last_input_shape = x.sizes().vec();
  return aq_ ? aq_->forward(x) : x;
}

void ScriptQuantLayer::observe(const torch::Tensor& y) {
  if (record_shapes) last_output_shape = y.sizes().vec();
}

void ScriptQuantLayer::pretty_print(std::ostream& s) const {
  s << "ScriptQuantLayer(" << kind_ << ", weight=" << weight.sizes();
  if (wq_) s << ", weight=" << wq_->describe();
  if (aq_) s << ", act=" << aq_->describe();
  s << ")";
}

// ------------------------------------------------------------------ file sniffing
bool is_torchscript_file(const std::string& name) {
  if (name.size() < 3 || !file_exists(name) || std::filesystem::is_directory(name)) return false;
  // A TorchScript archive is a zip (stored, uncompressed) with "<archive>/code/" and "<archive>/data.pkl".
  // autoqnn checkpoints are such archives too; their pickled attributes name our metadata key.
  std::ifstream f(name, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < 4 || bytes[0] != 'P' || bytes[1] != 'K') return false;
  return bytes.find("/code/") != std::string::npos && bytes.find("/data.pkl") != std::string::npos &&
         bytes.find("__autoqnn_meta__") == std::string::npos;
}

// ------------------------------------------------------------------ graph rewriting
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

struct FoundNode {
  Node* node;
  std::string path;  // module path of the weight's owner
  std::string kind;  // conv1d | conv2d | conv3d | linear
};

bool is_constant_false(Value* v) {
  auto iv = torch::jit::toIValue(v);
  return iv && iv->isBool() && !iv->toBool();
}

}  // namespace

namespace detail {

// "layer1.0.conv1" when `v` is self.layer1.0.conv1.weight (a chain of prim::GetAttr from the graph's self).
bool weight_path(torch::jit::Value* v, torch::jit::Value* self, std::string& path) {
  Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr || n->s(c10::attr::name) != "weight") return false;
  std::vector<std::string> parts;
  Value* cur = n->input(0);
  while (cur != self) {
    Node* p = cur->node();
    if (p->kind() != c10::prim::GetAttr) return false;
    parts.push_back(p->s(c10::attr::name));
    cur = p->input(0);
  }
  std::reverse(parts.begin(), parts.end());
  path.clear();
  for (const auto& s : parts) path += (path.empty() ? "" : ".") + s;
  return true;
}

void inline_all(torch::jit::Graph& g) {
  for (int pass = 0; pass < 64; ++pass) {
    bool any = false;
    for (Node* n : g.nodes())
      if (n->kind() == c10::prim::CallMethod || n->kind() == c10::prim::CallFunction) any = true;
    if (!any) return;
    torch::jit::Inline(g);
  }
}

}  // namespace detail

using detail::inline_all;
using detail::weight_path;

std::shared_ptr<TorchScriptModel> TorchScriptModel::from_file(const std::string& path, const ModelConfig& cfg) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("TorchScript model '" + path + "' cannot be read");
  std::ostringstream ss;
  ss << f.rdbuf();
  return from_bytes(ss.str(), path, cfg);
}

std::shared_ptr<TorchScriptModel> TorchScriptModel::from_bytes(const std::string& bytes, const std::string& label,
                                                               const ModelConfig& cfg) {
  if (cfg.in_channels <= 0 || cfg.image_size <= 0 || cfg.num_classes <= 0)
    throw std::runtime_error("TorchScript model '" + label + "': the input shape is unknown (pass --input-shape C,H,W "
                             "and --num-classes, or a --dataset)");
  std::shared_ptr<TorchScriptModel> m(new TorchScriptModel(label, cfg));
  m->build(bytes);
  return m;
}

void TorchScriptModel::build(const std::string& bytes) {
  const std::string& label = name();
  bytes_ = bytes;
  // The measured path (docs/models.md): the plain interpreter runs the rewritten graph as written.
  torch::jit::setGraphExecutorOptimize(false);
  ArchiveCheckOptions check;  // LibTorch's importer crashes on some damaged archives
  check.kind = "TorchScript model";
  check_torch_archive_bytes(bytes_, label, check);
  try {
    std::istringstream in(bytes_);
    module_ = torch::jit::load(in);
  } catch (const c10::Error& e) {
    throw std::runtime_error("TorchScript model '" + label + "' cannot be loaded (" +
                             std::string(e.what_without_backtrace()).substr(0, 300) + ")");
  }
  auto method = module_.find_method("forward");
  if (!method) throw std::runtime_error("TorchScript model '" + label + "' has no forward method");

  std::map<std::string, torch::Tensor> params, buffers;
  for (const auto& p : module_.named_parameters(/*recurse=*/true)) params[p.name] = p.value;
  for (const auto& b : module_.named_buffers(/*recurse=*/true)) buffers[b.name] = b.value;

  auto& fn = method->function();
  const auto qualname = fn.qualname();
  auto graph = torch::jit::toGraphFunction(fn).graph()->copy();
  inline_all(*graph);
  Value* self = graph->inputs().at(0);

  // Find the conv / linear nodes whose weight is a parameter reached from self.
  static const auto k_conv1d = c10::Symbol::fromQualString("aten::conv1d");
  static const auto k_conv2d = c10::Symbol::fromQualString("aten::conv2d");
  static const auto k_conv3d = c10::Symbol::fromQualString("aten::conv3d");
  static const auto k_conv_ = c10::Symbol::fromQualString("aten::_convolution");
  static const auto k_conv = c10::Symbol::fromQualString("aten::convolution");
  static const auto k_linear = c10::Symbol::fromQualString("aten::linear");
  static const auto k_bn = c10::Symbol::fromQualString("aten::batch_norm");
  std::vector<FoundNode> found;
  bool bn_mode_constant = false;
  for (Node* n : graph->nodes()) {
    const auto k = n->kind();
    if (k == k_bn && n->inputs().size() > 5 && n->input(5)->node()->kind() == c10::prim::Constant)
      bn_mode_constant = true;
    std::string kind;
    if (k == k_conv1d) kind = "conv1d";
    else if (k == k_conv2d) kind = "conv2d";
    else if (k == k_conv3d) kind = "conv3d";
    else if (k == k_linear) kind = "linear";
    else if ((k == k_conv_ || k == k_conv) && n->inputs().size() > 6 && is_constant_false(n->input(6))) kind = "conv";
    else continue;
    std::string path;
    if (!weight_path(n->input(1), self, path) || path.empty() || !params.count(path + ".weight")) {
      if (!params.empty()) log_warn("TorchScript model '" + label + "': a " + n->kind().toQualString() +
               " whose weight is not a submodule's parameter is left in float (cannot be wrapped)");
      continue;
    }
    if (kind == "conv") kind = "conv" + std::to_string(params[path + ".weight"].dim() - 2) + "d";
    found.push_back({n, path, kind});
  }
  if (found.empty()) {
    if (params.empty())
      throw std::runtime_error("TorchScript model '" + label + "' has no parameters (a torch.jit.freeze'd module? "
                               "its weights are constants, so it cannot be quantized or trained: save the module "
                               "before freezing)");
    throw std::runtime_error("TorchScript model '" + label + "' has no Conv1d/2d/3d or Linear layer whose weight is "
                             "a module parameter");
  }
  if (bn_mode_constant)
    log_warn("TorchScript model '" + label + "' was traced: its BatchNorm train/eval mode was fixed at trace time, so "
             "training and evaluation both use that mode (script the model to switch it)");

  // The mirror tree: one torch::nn::Module per module path, the quantizable ones as ScriptQuantLayer.
  std::map<std::string, std::shared_ptr<torch::nn::Module>> nodes;
  std::map<std::string, std::shared_ptr<ScriptQuantLayer>> qlayers;
  std::map<std::string, std::string> kind_of;
  for (const auto& f : found) kind_of.emplace(f.path, f.kind);
  std::function<torch::nn::Module&(const std::string&)> node_at = [&](const std::string& path) -> torch::nn::Module& {
    if (path.empty()) return *this;
    auto it = nodes.find(path);
    if (it != nodes.end()) return *it->second;
    const auto dot = path.rfind('.');
    auto& parent = node_at(dot == std::string::npos ? "" : path.substr(0, dot));
    const std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
    std::shared_ptr<torch::nn::Module> child;
    auto k = kind_of.find(path);
    if (k != kind_of.end()) {
      auto b = params.find(path + ".bias");
      auto q = std::make_shared<ScriptQuantLayer>(k->second, params.at(path + ".weight"),
                                                  b == params.end() ? torch::Tensor() : b->second);
      qlayers[path] = q;
      child = q;
    } else {
      child = std::make_shared<torch::nn::Module>("ScriptModule");
    }
    parent.register_module(leaf, child);
    nodes[path] = child;
    return *child;
  };
  // Module order = the module's own registration order (the policy's layer order).
  for (const auto& sm : module_.named_modules())
    if (!sm.name.empty() && kind_of.count(sm.name)) node_at(sm.name);
  auto split = [](const std::string& full, std::string& owner, std::string& leaf) {
    const auto dot = full.rfind('.');
    owner = dot == std::string::npos ? "" : full.substr(0, dot);
    leaf = dot == std::string::npos ? full : full.substr(dot + 1);
  };
  for (const auto& sm : module_.named_parameters(/*recurse=*/true)) {
    std::string owner, leaf;
    split(sm.name, owner, leaf);
    if (qlayers.count(owner) && (leaf == "weight" || leaf == "bias")) continue;  // registered by the layer
    node_at(owner).register_parameter(leaf, sm.value, sm.value.requires_grad());
  }
  for (const auto& sm : module_.named_buffers(/*recurse=*/true)) {
    std::string owner, leaf;
    split(sm.name, owner, leaf);
    node_at(owner).register_buffer(leaf, sm.value);
  }

  // Insert the operators around every found node and install the new graph as forward.
  static const auto k_qw = c10::Symbol::fromQualString("autoqnn::quant_weight");
  static const auto k_qa = c10::Symbol::fromQualString("autoqnn::quant_act");
  static const auto k_obs = c10::Symbol::fromQualString("autoqnn::observe");
  for (const auto& f : found) {
    Node* n = f.node;
    const int64_t id = qlayers.at(f.path)->id();
    {
      torch::jit::WithInsertPoint guard(n);
      Value* idv = graph->insertConstant(id);
      n->replaceInput(1, graph->insert(k_qw, {n->input(1), idv}));
      n->replaceInput(0, graph->insert(k_qa, {n->input(0), idv}));
    }
    {
      torch::jit::WithInsertPoint guard(n->next());
      Value* idv = graph->insertConstant(id);
      Value* obs = graph->insert(k_obs, {n->output(), idv});
      n->output()->replaceAllUsesAfterNodeWith(obs->node(), obs);
    }
  }
  auto type = module_.type();
  auto cu = module_._ivalue()->compilation_unit();
  type->unsafeRemoveMethod("forward");
  cu->unsafeRemoveMethod(qualname);
  type->addMethod(cu->create_function(qualname, graph));

  // The logits' shape is part of the model's contract with the data.
  const auto& c = config();
  torch::NoGradGuard ng;
  const bool was = is_training();
  train(false);
  auto y = forward(torch::zeros({2, c.in_channels, c.image_size, c.image_size}));
  train(was);
  if (y.dim() != 2 || y.size(0) != 2 || y.size(1) != c.num_classes) {
    std::ostringstream os;
    os << "TorchScript model '" << label << "' gives outputs of shape " << y.sizes() << " for inputs [2, "
       << c.in_channels << ", " << c.image_size << ", " << c.image_size << "]; expected [2, " << c.num_classes
       << "] (pass the matching --num-classes / --input-shape)";
    throw std::runtime_error(os.str());
  }
}

torch::Tensor TorchScriptModel::forward(const torch::Tensor& x) {
  auto out = module_.forward({x});
  if (!out.isTensor())
    throw std::runtime_error("TorchScript model '" + name() + "': forward must return one tensor of logits");
  return out.toTensor();
}

void TorchScriptModel::train(bool on) {
  Model::train(on);
  module_.train(on);
}

}  // namespace autoqnn
