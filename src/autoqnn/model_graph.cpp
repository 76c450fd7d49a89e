#include "autoqnn/model_graph.h"

#include <map>
#include <set>
#include <stdexcept>

#include "autoqnn/switchable_bn.h"

namespace autoqnn {

const char* graph_op_name(GraphOpKind k) {
  switch (k) {
    case GraphOpKind::Conv: return "conv";
    case GraphOpKind::Linear: return "linear";
    case GraphOpKind::BatchNorm: return "bn";
    case GraphOpKind::Relu: return "relu";
    case GraphOpKind::Relu6: return "relu6";
    case GraphOpKind::Add: return "add";
    case GraphOpKind::MaxPool: return "maxpool";
    case GraphOpKind::GlobalAvgPool: return "global_avgpool";
    case GraphOpKind::Flatten: return "flatten";
    case GraphOpKind::SubsamplePad: return "subsample_pad";
  }
  return "?";
}

namespace {

// Appends ops to a graph, looking modules up by their dotted names; each op's output is a fresh value.
class GraphBuilder {
 public:
  explicit GraphBuilder(Model& m) : model_(m) {
    for (const auto& item : m.named_modules("", /*include_self=*/false)) modules_[item.key()] = item.value();
    g_.model = m.name();
    g_.input_chw = {m.config().in_channels, m.config().image_size, m.config().image_size};
    g_.num_classes = m.config().num_classes;
  }
  bool has(const std::string& name) const { return modules_.count(name) > 0; }
  QuantConv2dImpl& conv_module(const std::string& name) const { return as<QuantConv2dImpl>(name, "QuantConv2d"); }

  std::string conv(const std::string& name, const std::string& in) {
    GraphOp op = make(GraphOpKind::Conv, name, {in});
    op.layer = &conv_module(name);
    return push(std::move(op));
  }
  std::string linear(const std::string& name, const std::string& in) {
    GraphOp op = make(GraphOpKind::Linear, name, {in});
    op.layer = &as<QuantLinearImpl>(name, "QuantLinear");
    return push(std::move(op));
  }
  std::string bn(const std::string& name, const std::string& in) {
    auto& sbn = as<SwitchableBatchNorm2dImpl>(name, "SwitchableBatchNorm2d");
    torch::nn::BatchNorm2dImpl* b = &sbn;
    if (sbn.selected() != 0) b = sbn.at_bits(sbn.selected()).get();
    GraphOp op = make(GraphOpKind::BatchNorm, name, {in});
    op.bn_mean = b->running_mean.detach();
    op.bn_var = b->running_var.detach();
    const int64_t c = op.bn_mean.size(0);
    op.bn_weight = b->options.affine() ? b->weight.detach() : torch::ones({c});
    op.bn_bias = b->options.affine() ? b->bias.detach() : torch::zeros({c});
    op.bn_eps = b->options.eps();
    return push(std::move(op));
  }
  std::string simple(GraphOpKind k, const std::vector<std::string>& in) {
    return push(make(k, std::string(graph_op_name(k)) + "_" + std::to_string(g_.ops.size()), in));
  }
  std::string maxpool(const std::string& in, int64_t kernel) {
    GraphOp op = make(GraphOpKind::MaxPool, "maxpool_" + std::to_string(g_.ops.size()), {in});
    op.kernel = kernel;
    return push(std::move(op));
  }
  std::string subsample_pad(const std::string& in, int64_t stride, int64_t front, int64_t back) {
    GraphOp op = make(GraphOpKind::SubsamplePad, "shortcut_" + std::to_string(g_.ops.size()), {in});
    op.stride = stride;
    op.pad_front = front;
    op.pad_back = back;
    return push(std::move(op));
  }
  ModelGraph finish(const std::string& out) {
    g_.output = out;
    return std::move(g_);
  }

 private:
  template <class T>
  T& as(const std::string& name, const char* what) const {
    auto it = modules_.find(name);
    T* p = it == modules_.end() ? nullptr : dynamic_cast<T*>(it->second.get());
    if (!p) throw std::invalid_argument("model '" + model_.name() + "': no " + what + " named '" + name + "'");
    return *p;
  }
  static GraphOp make(GraphOpKind k, const std::string& name, std::vector<std::string> in) {
    GraphOp op;
    op.kind = k;
    op.name = name;
    op.inputs = std::move(in);
    return op;
  }
  std::string push(GraphOp op) {
    op.output = op.name + ":out";
    g_.ops.push_back(std::move(op));
    return g_.ops.back().output;
  }

  Model& model_;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules_;
  ModelGraph g_;
};

ModelGraph lenet_graph(GraphBuilder& b, const std::string& x) {
  auto h = b.maxpool(b.simple(GraphOpKind::Relu, {b.bn("bn1", b.conv("conv1", x))}), 2);
  h = b.maxpool(b.simple(GraphOpKind::Relu, {b.bn("bn2", b.conv("conv2", h))}), 2);
  h = b.simple(GraphOpKind::Flatten, {h});
  h = b.simple(GraphOpKind::Relu, {b.linear("fc1", h)});
  h = b.simple(GraphOpKind::Relu, {b.linear("fc2", h)});
  return b.finish(b.linear("fc3", h));
}

ModelGraph resnet_graph(GraphBuilder& b, const std::string& x) {
  auto h = b.simple(GraphOpKind::Relu, {b.bn("bn1", b.conv("conv1", x))});
  for (const char* stage : {"layer1", "layer2", "layer3"}) {
    for (int i = 0;; ++i) {
      const std::string p = std::string(stage) + "." + std::to_string(i) + ".";
      if (!b.has(p + "conv1")) break;
      const auto& o = b.conv_module(p + "conv1").options;
      auto out = b.simple(GraphOpKind::Relu, {b.bn(p + "bn1", b.conv(p + "conv1", h))});
      out = b.bn(p + "bn2", b.conv(p + "conv2", out));
      std::string shortcut = h;
      if (o.stride() != 1 || o.in_channels() != o.out_channels()) {
        const int64_t extra = o.out_channels() - o.in_channels();
        shortcut = b.subsample_pad(h, o.stride(), extra / 2, extra - extra / 2);
      }
      h = b.simple(GraphOpKind::Relu, {b.simple(GraphOpKind::Add, {out, shortcut})});
    }
  }
  h = b.simple(GraphOpKind::Flatten, {b.simple(GraphOpKind::GlobalAvgPool, {h})});
  return b.finish(b.linear("fc", h));
}

ModelGraph vgg_graph(GraphBuilder& b, const std::string& x) {
  auto h = x;
  for (int i = 1; i <= 6; ++i) {
    const auto k = std::to_string(i);
    h = b.simple(GraphOpKind::Relu, {b.bn("bn" + k, b.conv("conv" + k, h))});
    if (i % 2 == 0) h = b.maxpool(h, 2);
  }
  return b.finish(b.linear("fc", b.simple(GraphOpKind::Flatten, {h})));
}

ModelGraph mobilenet_graph(GraphBuilder& b, const std::string& x) {
  auto h = b.simple(GraphOpKind::Relu6, {b.bn("bn1", b.conv("conv1", x))});
  for (int i = 0;; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    if (!b.has(p + "conv2")) break;
    const auto& dw = b.conv_module(p + "conv2").options;
    const auto& pr = b.conv_module(p + "conv3").options;
    const int64_t in = b.has(p + "conv1") ? b.conv_module(p + "conv1").options.in_channels() : dw.in_channels();
    auto t = h;
    if (b.has(p + "conv1")) t = b.simple(GraphOpKind::Relu6, {b.bn(p + "bn1", b.conv(p + "conv1", t))});
    t = b.simple(GraphOpKind::Relu6, {b.bn(p + "bn2", b.conv(p + "conv2", t))});
    t = b.bn(p + "bn3", b.conv(p + "conv3", t));
    h = dw.stride() == 1 && in == pr.out_channels() ? b.simple(GraphOpKind::Add, {t, h}) : t;
  }
  h = b.simple(GraphOpKind::Relu6, {b.bn("bn2", b.conv("conv2", h))});
  h = b.simple(GraphOpKind::Flatten, {b.simple(GraphOpKind::GlobalAvgPool, {h})});
  return b.finish(b.linear("fc", h));
}

}  // namespace

ModelGraph zoo_model_graph(Model& model) {
  GraphBuilder b(model);
  const std::string& n = model.name();
  const std::string x = "input";
  if (n == "lenet5") return lenet_graph(b, x);
  if (n.rfind("resnet", 0) == 0) return resnet_graph(b, x);
  if (n == "vgg7") return vgg_graph(b, x);
  if (n == "mobilenetv2") return mobilenet_graph(b, x);
  throw std::invalid_argument("model '" + n + "' has no graph description (zoo models: lenet5, resnet*, vgg7, mobilenetv2)");
}

torch::Tensor run_model_graph(const ModelGraph& g, const torch::Tensor& x, std::map<std::string, torch::Tensor>* values) {
  torch::NoGradGuard ng;
  std::map<std::string, torch::Tensor> v{{g.input, x}};
  auto in = [&](const GraphOp& op, size_t i) -> const torch::Tensor& {
    auto it = v.find(op.inputs.at(i));
    if (it == v.end()) throw std::runtime_error("graph op '" + op.name + "': unknown input '" + op.inputs[i] + "'");
    return it->second;
  };
  for (const auto& op : g.ops) {
    torch::Tensor y;
    switch (op.kind) {
      case GraphOpKind::Conv: y = static_cast<QuantConv2dImpl*>(op.layer)->forward(in(op, 0)); break;
      case GraphOpKind::Linear: y = static_cast<QuantLinearImpl*>(op.layer)->forward(in(op, 0)); break;
      case GraphOpKind::BatchNorm:
        y = torch::batch_norm(in(op, 0), op.bn_weight, op.bn_bias, op.bn_mean, op.bn_var, /*training=*/false, 0.0,
                              op.bn_eps, /*cudnn_enabled=*/false);
        break;
      case GraphOpKind::Relu: y = torch::relu(in(op, 0)); break;
      case GraphOpKind::Relu6: y = torch::relu6(in(op, 0)); break;
      case GraphOpKind::Add: y = in(op, 0) + in(op, 1); break;
      case GraphOpKind::MaxPool: y = torch::max_pool2d(in(op, 0), op.kernel); break;
      case GraphOpKind::GlobalAvgPool: y = in(op, 0).mean({2, 3}, /*keepdim=*/true); break;
      case GraphOpKind::Flatten: y = in(op, 0).flatten(1); break;
      case GraphOpKind::SubsamplePad: {
        using torch::indexing::None;
        using torch::indexing::Slice;
        auto s = in(op, 0).index({Slice(), Slice(), Slice(None, None, op.stride), Slice(None, None, op.stride)});
        y = torch::constant_pad_nd(s, {0, 0, 0, 0, op.pad_front, op.pad_back}, 0);
        break;
      }
    }
    v[op.output] = y;
  }
  torch::Tensor out = v.at(g.output);
  if (values) *values = std::move(v);
  return out;
}

}  // namespace autoqnn
