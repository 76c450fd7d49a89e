#include "autoqnn/onnx/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "autoqnn/runtime.h"
#include "quantizers/channel_quant.h"

namespace autoqnn {

namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}

// Puts the model and all its modules in eval mode for the export; restores every training flag after.
struct EvalGuard {
  std::vector<std::pair<torch::nn::Module*, bool>> modes;
  explicit EvalGuard(torch::nn::Module& m) {
    modes.emplace_back(&m, m.is_training());
    for (auto& c : m.modules(false)) modes.emplace_back(c.get(), c->is_training());
    m.eval();
  }
  ~EvalGuard() {
    for (auto& [mod, t] : modes) mod->train(t);
  }
};

// The graph under construction: nodes, initializers (with their byte counts), unique names.
class OnnxBuilder {
 public:
  explicit OnnxBuilder(onnx::GraphProto* g) : g_(g) {}

  // A constant; returns its name and adds its bytes to `bytes` when given.
  std::string init(const std::string& name, const torch::Tensor& t, int64_t* bytes = nullptr) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    for (auto d : c.sizes()) p->add_dims(d);
    switch (c.scalar_type()) {
      case torch::kFloat32: p->set_data_type(onnx::TensorProto::FLOAT); break;
      case torch::kInt8: p->set_data_type(onnx::TensorProto::INT8); break;
      case torch::kUInt8: p->set_data_type(onnx::TensorProto::UINT8); break;
      case torch::kInt32: p->set_data_type(onnx::TensorProto::INT32); break;
      case torch::kInt64: p->set_data_type(onnx::TensorProto::INT64); break;
      default: throw std::runtime_error(std::string("ONNX export: no initializer type for ") + c10::toString(c.scalar_type()));
    }
    const size_t n = static_cast<size_t>(c.numel() * c.element_size());
    p->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()), n));  // little-endian host (x86-64)
    if (bytes) *bytes += static_cast<int64_t>(n);
    return name;
  }
  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& in, const std::string& out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(out + "/" + op);
    for (const auto& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  static void attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  int64_t nodes() const { return g_->node_size(); }

 private:
  onnx::GraphProto* g_;
};

torch::Tensor f32(const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat32); }

// Shape that broadcasts a [C] vector along `axis` of a tensor of rank `rank`.
std::vector<int64_t> along(int64_t axis, int64_t c, int64_t rank) {
  std::vector<int64_t> s(rank, 1);
  s[axis] = c;
  return s;
}

struct WeightOut {
  std::string value;  // the float weight the conv / gemm reads
  int64_t bytes = 0;
  std::string form;
};

// The weight of `layer` as ONNX nodes (see the header), multiplied per output channel by `fold` (BN) when
// defined. Checks in LibTorch that the form computes the model's weight (x fold) to float rounding.
WeightOut build_weight(OnnxBuilder& b, const std::string& lname, QuantLayer& layer, const torch::Tensor& fold) {
  const std::string spec = layer.weight_quantizer() ? layer.weight_quantizer()->describe() : "fp32";
  auto fail = [&](const std::string& why) {
    return std::runtime_error("ONNX export: layer '" + lname + "' weight scheme '" + spec + "' cannot be expressed: " + why);
  };
  const torch::Tensor w = f32(layer.weight_param());
  const int64_t rank = w.dim(), cout = w.size(0);
  const torch::Tensor f = fold.defined() ? f32(fold) : torch::Tensor();
  const torch::Tensor want = f.defined() ? f32(layer.effective_weight()) * f.reshape(along(0, cout, rank))
                                         : f32(layer.effective_weight());
  WeightOut out;
  out.value = lname + ".weight";
  if (!layer.weight_quantizer()) {
    b.init(out.value, want, &out.bytes);
    out.form = "float32";
    return out;
  }
  if (std::dynamic_pointer_cast<quant::ChannelWeightQuantizer>(layer.weight_quantizer()))
    throw fail("per-channel bitwidths / bias correction are not supported by the ONNX export");
  auto q = std::dynamic_pointer_cast<quant::Quantizer>(layer.weight_quantizer());
  if (!q) throw fail("not a single scheme (derive a policy first)");
  const quant::Encoded e = q->encode(layer.weight_param().detach().to(torch::kCPU));
  if (!e.codes.defined() || !e.scale.defined() || e.codes.sizes() != w.sizes())
    throw fail("encode() returned no codes / scale of the weight's shape");
  const int64_t axis = e.axis;
  const torch::Tensor codes = e.codes.to(torch::kInt64);
  // scale / offset broadcast to the weight (then x fold); per-channel rows along `axis`.
  auto bcast = [&](const torch::Tensor& v) {
    torch::Tensor t = f32(v);
    if (t.dim() == 1) t = t.reshape(along(axis, t.size(0), rank));
    return t;
  };
  torch::Tensor scale_b = bcast(e.scale), offset_b = e.offset.defined() ? bcast(e.offset) : torch::Tensor();
  if (f.defined()) {
    scale_b = scale_b * f.reshape(along(0, cout, rank));
    if (offset_b.defined()) offset_b = offset_b * f.reshape(along(0, cout, rank));
  }
  const bool per_tensor = scale_b.numel() == 1;
  // DequantizeLinear takes a scalar or a [C] scale along one axis: per tensor or along axis 0 here.
  const bool dq_ok = !e.table.defined() && (per_tensor || axis == 0 || (axis < 0 && f.defined()));
  auto check = [&](const torch::Tensor& got) {
    const double tol = 1e-6 * std::max(1e-30, want.abs().max().item<double>());
    const double d = (got - want).abs().max().item<double>();
    if (!(d <= tol))
      throw std::runtime_error("ONNX export: layer '" + lname + "' (" + spec + "): the " + out.form +
                               " form differs from the model's weight by " + fmt(d));
  };
  auto add_offset = [&](std::string v) {
    if (!offset_b.defined()) return v;
    const std::string off = b.init(lname + ".weight.offset", offset_b, &out.bytes);
    b.node("Add", {v, off}, out.value);
    return out.value;
  };

  if (dq_ok) {
    // Integer values on the grid: q = code + grid_base, or 2q on a half grid (VecQ / ClipQ), scale / 2.
    const double gb = e.grid_base;
    torch::Tensor qv, sc = per_tensor ? scale_b.reshape({}) : scale_b.reshape({cout});
    torch::Tensor zp;
    const char* dtype = nullptr;
    if (gb == std::floor(gb)) {
      qv = codes + static_cast<int64_t>(gb);
    } else if (2 * gb == std::floor(2 * gb)) {
      qv = codes * 2 + static_cast<int64_t>(2 * gb);
      sc = sc / 2;
    }
    if (qv.defined()) {
      const int64_t lo = qv.min().item<int64_t>(), hi = qv.max().item<int64_t>();
      if (lo >= -128 && hi <= 127) {
        dtype = "int8";
        qv = qv.to(torch::kInt8);
      } else if (gb <= 0 && -gb <= 255 && gb == std::floor(gb) && codes.max().item<int64_t>() <= 255) {
        dtype = "uint8";
        zp = torch::full(sc.sizes(), static_cast<int64_t>(-gb), torch::kUInt8);
        qv = codes.to(torch::kUInt8);
      } else if (e.code_bits <= 31) {
        dtype = "int32";
        qv = qv.to(torch::kInt32);
      }
    }
    if (dtype) {
      out.form = std::string(dtype) + " DequantizeLinear " + (per_tensor ? "per-tensor" : "per-channel");
      const std::string x = b.init(lname + ".weight.q", qv, &out.bytes);
      const std::string s = b.init(lname + ".weight.scale", sc, &out.bytes);
      std::vector<std::string> in{x, s};
      if (zp.defined()) in.push_back(b.init(lname + ".weight.zero_point", zp, &out.bytes));
      const std::string dq = offset_b.defined() ? lname + ".weight.dq" : out.value;
      auto* n = b.node("DequantizeLinear", in, dq);
      if (!per_tensor) OnnxBuilder::attr(n, "axis", int64_t{0});
      add_offset(dq);
      const torch::Tensor zpf = zp.defined() ? zp.to(torch::kFloat32) : torch::zeros({});
      torch::Tensor got = (qv.to(torch::kFloat32) - (zpf.numel() == 1 ? zpf.reshape({}) : zpf.reshape(along(0, cout, rank)))) *
                          (per_tensor ? sc : sc.reshape(along(0, cout, rank)));
      if (offset_b.defined()) got = got + offset_b;
      check(got);
      return out;
    }
  }
  // Level table: uint8 codes -> Cast -> (+ row offset for per-channel tables) -> Gather -> Mul(scale) (-> Add).
  if (e.code_bits > 8) throw fail(std::to_string(e.code_bits) + "-bit codes off an integer grid (uint8 codes hold at most 8 bits)");
  torch::Tensor table = e.table.defined() ? f32(e.table)
                                          : torch::arange(int64_t{1} << e.code_bits, torch::kFloat64).add(e.grid_base).to(torch::kFloat32);
  const int64_t levels = table.size(-1);
  torch::Tensor idx = codes;
  std::string idx_v = b.init(lname + ".weight.codes", codes.to(torch::kUInt8), &out.bytes);
  auto* cast = b.node("Cast", {idx_v}, lname + ".weight.idx");
  OnnxBuilder::attr(cast, "to", int64_t{onnx::TensorProto::INT32});
  idx_v = lname + ".weight.idx";
  if (table.dim() == 2) {  // one row of levels per channel along `axis`: index the flattened table
    const int64_t rows = table.size(0);
    auto row_off = (torch::arange(rows, torch::kInt64) * levels).reshape(along(axis, rows, rank));
    b.init(lname + ".weight.row_offset", row_off.to(torch::kInt32), &out.bytes);
    b.node("Add", {idx_v, lname + ".weight.row_offset"}, lname + ".weight.row_idx");
    idx_v = lname + ".weight.row_idx";
    idx = idx + row_off;
    table = table.reshape({-1});
  }
  const std::string t = b.init(lname + ".weight.table", table, &out.bytes);
  b.node("Gather", {t, idx_v}, lname + ".weight.levels");
  const std::string s = b.init(lname + ".weight.scale", per_tensor ? scale_b.reshape({}) : scale_b, &out.bytes);
  const std::string mul = offset_b.defined() ? lname + ".weight.scaled" : out.value;
  b.node("Mul", {lname + ".weight.levels", s}, mul);
  add_offset(mul);
  out.form = "uint8 codes + Gather(" + std::to_string(levels) + " levels" + (e.table.defined() && e.table.dim() == 2 ? " per channel" : "") + ")";
  torch::Tensor got = table.index({idx.reshape({-1})}).reshape(w.sizes()) * (per_tensor ? scale_b.reshape({}) : scale_b);
  if (offset_b.defined()) got = got + offset_b;
  check(got);
  return out;
}

// Clip -> QuantizeLinear -> DequantizeLinear for a quantized layer input; returns the dequantized value.
std::string build_act(OnnxBuilder& b, const std::string& lname, const FakeQuantPtr& aq, const torch::Tensor& sample,
                      const std::string& in, OnnxLayerReport& lr, int64_t* bytes) {
  const std::string spec = aq->describe();
  auto fail = [&](const std::string& why) {
    return std::runtime_error("ONNX export: layer '" + lname + "' activation scheme '" + spec +
                              "' cannot be expressed as QuantizeLinear/DequantizeLinear: " + why);
  };
  auto q = std::dynamic_pointer_cast<quant::Quantizer>(aq);
  if (!q) throw fail("not a single scheme (derive a policy first)");
  if (q->axis() >= 0) throw fail("per-channel activation scales are not supported");
  const quant::Encoded e = q->encode(sample);
  if (e.table.defined()) throw fail("its levels are not uniform (a level table)");
  if (!e.scale.defined() || e.scale.numel() != 1) throw fail("no per-tensor scale");
  const float s = e.scale.item<float>();
  const double off = e.offset.defined() ? e.offset.item<double>() : 0.0;
  if (!(s > 0) || !std::isfinite(s)) throw fail("scale " + fmt(s) + " (not calibrated?)");
  const torch::Tensor lv = q->levels(sample).to(torch::kFloat64);
  const double lo = lv.min().item<double>(), hi = lv.max().item<double>();
  const double steps = std::round((hi - lo) / s);
  if (steps > 255) throw fail(fmt(steps + 1) + " levels (QuantizeLinear uint8 holds 256)");
  const double lo_q = lo / s;
  std::string x = in;
  int64_t zp = 0;
  double shift = 0;
  if (off == 0 && std::abs(lo_q - std::round(lo_q)) < 1e-3 && -std::round(lo_q) >= 0 &&
      -std::round(lo_q) + steps <= 255) {
    zp = -static_cast<int64_t>(std::round(lo_q));  // the grid is integer multiples of s: an integer zero point
  } else {
    shift = lo;  // levels lo + k s: quantize x - lo on [0, steps s], add lo back
    x = b.node("Sub", {x, b.init(lname + ".act.shift", torch::full({}, static_cast<float>(shift)), bytes)},
               lname + ".act.shifted")->output(0);
  }
  const float clo = static_cast<float>(shift == 0 ? lo : 0.0), chi = static_cast<float>(shift == 0 ? hi : hi - lo);
  x = b.node("Clip", {x, b.init(lname + ".act.min", torch::full({}, clo), bytes),
                      b.init(lname + ".act.max", torch::full({}, chi), bytes)},
             lname + ".act.clipped")->output(0);
  const std::string sv = b.init(lname + ".act.scale", torch::full({}, s), bytes);
  const std::string zv = b.init(lname + ".act.zero_point", torch::full({}, zp, torch::kUInt8), bytes);
  b.node("QuantizeLinear", {x, sv, zv}, lname + ".act.q");
  x = b.node("DequantizeLinear", {lname + ".act.q", sv, zv}, lname + ".act.dq")->output(0);
  if (shift != 0) x = b.node("Add", {x, lname + ".act.shift"}, lname + ".act")->output(0);
  lr.act_scale = s;
  lr.act_form = "QDQ uint8 scale=" + fmt(s) + " zero_point=" + std::to_string(zp) + (shift != 0 ? " shift=" + fmt(shift) : "") +
         " (" + fmt(steps + 1) + " levels)";
  return x;
}

}  // namespace

OnnxExportReport export_onnx(Model& model, const ModelGraph& graph, const Policy& policy, const std::string& path,
                             const OnnxExportOptions& options) {
  if (options.opset < 13 || options.opset > 17)
    throw std::invalid_argument("ONNX export: opset " + std::to_string(options.opset) + " (supported: 13..17)");
  EvalGuard eval(model);
  torch::NoGradGuard ng;
  model.to(torch::kCPU);

  // One reference pass on a zero image: the input each quantized layer sees (activation quantizers'
  // levels are taken on it; calibrated quantizers use their running statistics).
  std::map<std::string, torch::Tensor> values;
  std::vector<int64_t> in_shape{1};
  in_shape.insert(in_shape.end(), graph.input_chw.begin(), graph.input_chw.end());
  run_model_graph(graph, torch::zeros(in_shape), &values);
  std::map<std::string, int> uses;
  for (const auto& op : graph.ops)
    for (const auto& i : op.inputs) ++uses[i];

  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("autoqnn");
  m.set_producer_version(AUTOQNN_VERSION);
  m.set_doc_string("model " + graph.model + "; policy weight bytes " + std::to_string(policy.totals.weight_bytes));
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name(graph.model);
  OnnxBuilder b(g);
  auto value_info = [](onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    auto* sh = tt->mutable_shape();
    sh->add_dim()->set_dim_param("batch");
    for (auto d : dims) sh->add_dim()->set_dim_value(d);
  };
  value_info(g->add_input(), "input", graph.input_chw);
  value_info(g->add_output(), "logits", {graph.num_classes});
  auto val = [&](const std::string& v) {
    return v == graph.input ? std::string("input") : v == graph.output ? std::string("logits") : v;
  };

  OnnxExportReport rep;
  rep.policy_weight_bytes = policy.totals.weight_bytes;
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    const GraphOp& op = graph.ops[i];
    const std::string x = op.inputs.empty() ? "" : val(op.inputs[0]);
    switch (op.kind) {
      case GraphOpKind::Conv:
      case GraphOpKind::Linear: {
        QuantLayer& layer = *op.layer;
        const LayerPolicy* lp = policy.find(op.name);
        if (!lp) throw std::runtime_error("ONNX export: layer '" + op.name + "' is not in the policy");
        const std::string installed = layer.weight_quantizer() ? layer.weight_quantizer()->describe() : "fp32";
        if (installed != lp->weight.to_string())
          throw std::runtime_error("ONNX export: layer '" + op.name + "': installed weight quantizer '" + installed +
                                   "' differs from the policy's '" + lp->weight.to_string() + "'");
        OnnxLayerReport lr;
        lr.name = op.name;
        lr.spec = lp->weight.to_string();
        lr.policy_bytes = lp->weight_bytes;
        const bool is_conv = op.kind == GraphOpKind::Conv;
        torch::Tensor bias = is_conv ? static_cast<QuantConv2dImpl*>(op.layer)->bias
                                     : static_cast<QuantLinearImpl*>(op.layer)->bias;
        const int64_t cout = layer.weight_param().size(0);
        bias = bias.defined() ? f32(bias) : torch::zeros({cout});
        torch::Tensor fold;
        std::string out = val(op.output);
        if (is_conv && options.fold_batchnorm && i + 1 < graph.ops.size() &&
            graph.ops[i + 1].kind == GraphOpKind::BatchNorm && graph.ops[i + 1].inputs.at(0) == op.output &&
            uses[op.output] == 1) {
          const GraphOp& bn = graph.ops[++i];
          // y = (conv(x, W) + b - mean) / sqrt(var + eps) * gamma + beta = conv(x, W f) + (b - mean) f + beta
          fold = f32(bn.bn_weight) / (f32(bn.bn_var) + static_cast<float>(bn.bn_eps)).sqrt();
          bias = (bias - f32(bn.bn_mean)) * fold + f32(bn.bn_bias);
          out = val(bn.output);
        }
        std::string xin = x;
        if (layer.act_quantizer()) {
          xin = build_act(b, op.name, layer.act_quantizer(), values.at(op.inputs[0]), x, lr, &rep.other_bytes);
          ++rep.act_qdq;
        }
        WeightOut w = build_weight(b, op.name, layer, fold);
        lr.weight_form = w.form;
        lr.onnx_weight_bytes = w.bytes;
        const std::string bv = b.init(op.name + ".bias", bias, &rep.other_bytes);
        if (is_conv) {
          const auto& o = static_cast<QuantConv2dImpl*>(op.layer)->options;
          auto* n = b.node("Conv", {xin, w.value, bv}, out);
          OnnxBuilder::attr(n, "kernel_shape", std::vector<int64_t>{o.kernel_size(), o.kernel_size()});
          OnnxBuilder::attr(n, "strides", std::vector<int64_t>{o.stride(), o.stride()});
          OnnxBuilder::attr(n, "pads", std::vector<int64_t>{o.padding(), o.padding(), o.padding(), o.padding()});
          OnnxBuilder::attr(n, "dilations", std::vector<int64_t>{1, 1});
          OnnxBuilder::attr(n, "group", o.groups());
        } else {
          OnnxBuilder::attr(b.node("Gemm", {xin, w.value, bv}, out), "transB", int64_t{1});
        }
        rep.onnx_weight_bytes += w.bytes;
        rep.layers.push_back(std::move(lr));
        break;
      }
      case GraphOpKind::BatchNorm: {
        auto* n = b.node("BatchNormalization",
                         {x, b.init(op.name + ".weight", f32(op.bn_weight), &rep.other_bytes),
                          b.init(op.name + ".bias", f32(op.bn_bias), &rep.other_bytes),
                          b.init(op.name + ".running_mean", f32(op.bn_mean), &rep.other_bytes),
                          b.init(op.name + ".running_var", f32(op.bn_var), &rep.other_bytes)},
                         val(op.output));
        OnnxBuilder::attr(n, "epsilon", static_cast<float>(op.bn_eps));
        break;
      }
      case GraphOpKind::Relu: b.node("Relu", {x}, val(op.output)); break;
      case GraphOpKind::Relu6:
        b.node("Clip", {x, b.init(op.name + ".min", torch::zeros({}), &rep.other_bytes),
                        b.init(op.name + ".max", torch::full({}, 6.0f), &rep.other_bytes)},
               val(op.output));
        break;
      case GraphOpKind::Add: b.node("Add", {x, val(op.inputs.at(1))}, val(op.output)); break;
      case GraphOpKind::MaxPool: {
        auto* n = b.node("MaxPool", {x}, val(op.output));
        OnnxBuilder::attr(n, "kernel_shape", std::vector<int64_t>{op.kernel, op.kernel});
        OnnxBuilder::attr(n, "strides", std::vector<int64_t>{op.kernel, op.kernel});
        break;
      }
      case GraphOpKind::GlobalAvgPool: b.node("GlobalAveragePool", {x}, val(op.output)); break;
      case GraphOpKind::Flatten: OnnxBuilder::attr(b.node("Flatten", {x}, val(op.output)), "axis", int64_t{1}); break;
      case GraphOpKind::SubsamplePad: {
        const int64_t big = std::numeric_limits<int64_t>::max();
        auto i64 = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); };
        const std::string sl = op.name + ".sliced";
        b.node("Slice", {x, b.init(op.name + ".starts", i64({0, 0}), &rep.other_bytes),
                         b.init(op.name + ".ends", i64({big, big}), &rep.other_bytes),
                         b.init(op.name + ".axes", i64({2, 3}), &rep.other_bytes),
                         b.init(op.name + ".steps", i64({op.stride, op.stride}), &rep.other_bytes)},
               sl);
        b.node("Pad", {sl, b.init(op.name + ".pads", i64({0, op.pad_front, 0, 0, 0, op.pad_back, 0, 0}), &rep.other_bytes)},
               val(op.output));
        break;
      }
    }
  }
  rep.nodes = b.nodes();

  try {
    onnx::checker::check_model(m);
    onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/1, false));
  } catch (const std::exception& ex) {
    throw std::runtime_error("ONNX export of '" + graph.model + "': the ONNX checker / shape inference rejected the graph: " +
                             ex.what());
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) throw std::runtime_error("ONNX export: serialising the model failed");
  atomic_write(path, [&](const std::string& tmp) {
    std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
    if (!os) throw std::runtime_error("cannot write '" + tmp + "'");
    os.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    os.flush();
    if (!os) throw std::runtime_error("writing '" + path + "' failed (disk full?)");
  });
  rep.file_bytes = static_cast<int64_t>(bytes.size());
  return rep;
}

}  // namespace autoqnn
