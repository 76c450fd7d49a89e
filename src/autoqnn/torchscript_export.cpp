// export --format torchscript: an imported model back as a TorchScript module that plain `torch.jit.load` runs
// (standard ATen operators only, no autoqnn operator). Weights are baked (the effective, fake-quantized
// weight), or with keep_latent kept in FP32 with the quantizer's scale / offset as buffers of the root module
// and the fake-quant written as ops; activation quantizers become the same ops on the layer's input.
// The ops reproduce a grid scheme's eval-mode forward: out = round(clamp((x - offset) / scale, lo, hi)) *
// scale + offset, with scale / offset from the quantizer's encode() (its running statistics or learned clip).
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "autoqnn/torchscript_graph.h"
#include "autoqnn/torchscript_model.h"

namespace autoqnn {

namespace {

// A fake-quantizer expressible with ATen ops: the grid [lo, hi] in level units, scale / offset shaped to
// broadcast against the tensor they quantize (offset undefined = 0).
struct AtenGrid {
  torch::Tensor scale, offset;
  double lo = 0, hi = 0;
};

AtenGrid aten_grid(const FakeQuantPtr& fq, const torch::Tensor& sample, const std::string& layer,
                   const char* role) {
  auto fail = [&](const std::string& what) {
    return std::runtime_error("export --format torchscript: layer '" + layer + "' has the " + role + " quantizer '" +
                              fq->describe() + "'; " + what);
  };
  auto* q = dynamic_cast<quant::Quantizer*>(fq.get());
  if (!q) throw fail("only a fixed policy's scheme can be exported (convert the searched model first)");
  const auto& spec = q->spec();
  const int b = q->bits();
  AtenGrid g;
  if (spec.scheme == "fixed") {
    g.lo = -std::ldexp(1.0, b - 1);
    g.hi = std::ldexp(1.0, b - 1) - 1;
  } else if (spec.scheme == "uniform" && spec.flag("asym")) {
    g.lo = 0;
    g.hi = std::ldexp(1.0, b) - 1;
  } else if (spec.scheme == "uniform") {
    g.hi = std::ldexp(1.0, b - 1) - 1;
    g.lo = -g.hi;
  } else if (spec.scheme == "pact") {
    g.lo = 0;
    g.hi = std::ldexp(1.0, b) - 1;
  } else {
    throw fail("scheme '" + spec.scheme + "' cannot be written with standard ATen ops (fixed, uniform and pact can)");
  }
  torch::NoGradGuard ng;
  const quant::Encoded e = q->encode(sample);
  if (e.table.defined()) throw fail("a level table cannot be written with standard ATen ops");
  std::vector<int64_t> shape(sample.dim(), 1);
  auto shaped = [&](const torch::Tensor& t) {
    if (e.axis < 0) return t.reshape({}).clone();
    shape.at(e.axis) = t.numel();
    return t.reshape(shape).clone();
  };
  g.scale = shaped(e.scale.to(torch::kFloat32));
  if (e.offset.defined()) g.offset = shaped(e.offset.to(torch::kFloat32));
  return g;
}

using torch::jit::Graph;
using torch::jit::Value;

// Inserts, before the current insert point, the ops computing the fake-quant of `x` with the root buffers
// `<stem>_scale` / `<stem>_offset` (registered on `root`).
Value* insert_fake_quant(Graph& g, Value* self, Value* x, const AtenGrid& grid, torch::jit::Module& root,
                         const std::string& stem) {
  using c10::Symbol;
  root.register_buffer(stem + "_scale", grid.scale);
  Value* s = g.insertGetAttr(self, stem + "_scale");
  Value* off = nullptr;
  Value* t = x;
  if (grid.offset.defined()) {
    root.register_buffer(stem + "_offset", grid.offset);
    off = g.insertGetAttr(self, stem + "_offset");
    t = g.insert(Symbol::fromQualString("aten::sub"), {t, off});
  }
  t = g.insert(Symbol::fromQualString("aten::div"), {t, s});
  t = g.insert(Symbol::fromQualString("aten::clamp"), {t, g.insertConstant(grid.lo), g.insertConstant(grid.hi)});
  t = g.insert(Symbol::fromQualString("aten::round"), {t});
  t = g.insert(Symbol::fromQualString("aten::mul"), {t, s});
  if (off) t = g.insert(Symbol::fromQualString("aten::add"), {t, off});
  return t;
}

std::string buffer_stem(const std::string& layer, const char* what) {
  std::string s = "autoqnn_" + layer + "_" + what;
  for (auto& c : s)
    if (c == '.') c = '_';
  return s;
}

}  // namespace

torch::jit::Module TorchScriptModel::export_plain(const TorchScriptExportOptions& opt) {
  std::istringstream in(bytes_);
  auto plain = torch::jit::load(in);
  torch::NoGradGuard ng;
  const bool was = is_training();
  train(false);

  // What each layer needs: a baked weight, or latent weight + weight grid; an activation grid.
  std::map<std::string, torch::Tensor> baked;
  std::map<std::string, AtenGrid> wgrid, agrid;
  std::map<std::string, std::vector<int64_t>> input_shape;
  bool any_act = false;
  for (auto& l : quant_layers(*this)) any_act = any_act || l.layer->act_quantizer() != nullptr;
  if (any_act)
    for (const auto& p : profile_model(*this)) input_shape[p.name] = p.input_shape;
  try {
    for (auto& l : quant_layers(*this)) {
      const auto& wq = l.layer->weight_quantizer();
      if (opt.keep_latent && wq) wgrid[l.name] = aten_grid(wq, l.layer->weight_param(), l.name, "weight");
      else baked[l.name + ".weight"] = l.layer->effective_weight().detach().clone();
      if (const auto& aq = l.layer->act_quantizer()) {
        std::vector<int64_t> shape{1};
        const auto& s = input_shape.at(l.name);
        shape.insert(shape.end(), s.begin(), s.end());
        agrid[l.name] = aten_grid(aq, torch::zeros(shape), l.name, "activation");
      }
    }
  } catch (...) {
    train(was);
    throw;
  }
  train(was);

  // Parameters and buffers: this model's values (baked weights where quantized).
  auto named = named_parameters(true);
  auto named_b = named_buffers(true);
  auto set = [&](const std::string& full, const torch::Tensor& v) {
    const auto dot = full.rfind('.');
    torch::jit::Module owner = plain;
    if (dot != std::string::npos) {
      std::stringstream ss(full.substr(0, dot));
      std::string part;
      while (std::getline(ss, part, '.')) owner = owner.attr(part).toModule();
    }
    const std::string leaf = dot == std::string::npos ? full : full.substr(dot + 1);
    owner.attr(leaf).toTensor().copy_(v);
  };
  for (const auto& p : plain.named_parameters(true)) {
    auto e = baked.find(p.name);
    if (e != baked.end()) set(p.name, e->second);
    else if (auto* t = named.find(p.name)) set(p.name, *t);
  }
  for (const auto& b : plain.named_buffers(true))
    if (auto* t = named_b.find(b.name)) set(b.name, *t);

  if (!wgrid.empty() || !agrid.empty()) {
    // The forward graph, inlined, with the fake-quant ops on each layer's weight / input (the nodes the
    // import wraps: the first two inputs of aten::conv*, aten::_convolution, aten::linear).
    auto& fn = plain.get_method("forward").function();
    const auto qualname = fn.qualname();
    auto graph = torch::jit::toGraphFunction(fn).graph()->copy();
    detail::inline_all(*graph);
    Value* self = graph->inputs().at(0);
    static const std::set<std::string> kinds = {"aten::conv1d", "aten::conv2d", "aten::conv3d",
                                                "aten::_convolution", "aten::convolution", "aten::linear"};
    std::set<std::string> done;
    std::vector<torch::jit::Node*> nodes(graph->nodes().begin(), graph->nodes().end());
    for (auto* n : nodes) {
      if (!kinds.count(n->kind().toQualString()) || n->inputs().size() < 2) continue;
      std::string path;
      if (!detail::weight_path(n->input(1), self, path)) continue;
      torch::jit::WithInsertPoint guard(n);
      if (auto w = wgrid.find(path); w != wgrid.end())
        n->replaceInput(1, insert_fake_quant(*graph, self, n->input(1), w->second, plain, buffer_stem(path, "weight")));
      if (auto a = agrid.find(path); a != agrid.end())
        n->replaceInput(0, insert_fake_quant(*graph, self, n->input(0), a->second, plain, buffer_stem(path, "act")));
      done.insert(path);
    }
    for (const auto* m : {&wgrid, &agrid})
      for (const auto& kv : *m)
        if (!done.count(kv.first))
          throw std::runtime_error("export --format torchscript: layer '" + kv.first +
                                   "' was not found in the module's forward graph");
    auto type = plain.type();
    auto cu = plain._ivalue()->compilation_unit();
    type->unsafeRemoveMethod("forward");
    cu->unsafeRemoveMethod(qualname);
    type->addMethod(cu->create_function(qualname, graph));
  }
  plain.eval();
  return plain;
}

}  // namespace autoqnn
