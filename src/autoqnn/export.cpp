#include "autoqnn/export.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "autoqnn/json_io.h"
#include "autoqnn/runtime.h"
#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn {

using nlohmann::json;

namespace {

bool host_is_little_endian() {
  const uint16_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

void require_little_endian() {
  if (!host_is_little_endian())
    throw std::runtime_error("safetensors I/O is implemented for little-endian hosts only");
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const char* kFormat = "autoqnn-packed";
const char* kFormatVersion = "1";

}  // namespace

// ---------------------------------------------------------------- bit packing
std::vector<uint8_t> pack_bits(const torch::Tensor& codes, int bits) {
  if (bits < 1 || bits > 32) throw std::invalid_argument("pack_bits: bits must be in [1, 32], got " + std::to_string(bits));
  if (!c10::isIntegralType(codes.scalar_type(), /*includeBool=*/false))
    throw std::invalid_argument("pack_bits: codes must be an integer tensor");
  auto c = codes.detach().to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = c.numel();
  const int64_t* p = c.data_ptr<int64_t>();
  const uint64_t limit = uint64_t(1) << bits;
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>((n * bits + 7) / 8));
  uint64_t acc = 0;
  int nacc = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] < 0 || static_cast<uint64_t>(p[i]) >= limit)
      throw std::out_of_range("pack_bits: code " + std::to_string(p[i]) + " at element " + std::to_string(i) +
                              " does not fit in " + std::to_string(bits) + " bits");
    acc |= static_cast<uint64_t>(p[i]) << nacc;
    nacc += bits;
    while (nacc >= 8) {
      out.push_back(static_cast<uint8_t>(acc & 0xff));
      acc >>= 8;
      nacc -= 8;
    }
  }
  if (nacc > 0) out.push_back(static_cast<uint8_t>(acc & 0xff));
  return out;
}

torch::Tensor unpack_bits(const uint8_t* data, size_t nbytes, int64_t count, int bits) {
  if (bits < 1 || bits > 32) throw std::invalid_argument("unpack_bits: bits must be in [1, 32], got " + std::to_string(bits));
  if (count < 0) throw std::invalid_argument("unpack_bits: negative count");
  const size_t need = static_cast<size_t>((count * bits + 7) / 8);
  if (nbytes != need)
    throw std::invalid_argument("unpack_bits: " + std::to_string(count) + " codes of " + std::to_string(bits) +
                                " bits need " + std::to_string(need) + " bytes, got " + std::to_string(nbytes));
  auto out = torch::empty({count}, torch::kInt64);
  int64_t* o = out.data_ptr<int64_t>();
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  uint64_t acc = 0;
  int nacc = 0;
  size_t pos = 0;
  for (int64_t i = 0; i < count; ++i) {
    while (nacc < bits) {
      acc |= static_cast<uint64_t>(data[pos++]) << nacc;
      nacc += 8;
    }
    o[i] = static_cast<int64_t>(acc & mask);
    acc >>= bits;
    nacc -= bits;
  }
  return out;
}

// ---------------------------------------------------------------- safetensors
size_t dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL") return 1;
  throw std::invalid_argument("unknown safetensors dtype '" + d + "'");
}

namespace {
struct DtypeMap {
  torch::ScalarType st;
  const char* name;
};
const DtypeMap kDtypes[] = {{torch::kFloat64, "F64"}, {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"},
                            {torch::kBFloat16, "BF16"}, {torch::kInt64, "I64"}, {torch::kInt32, "I32"},
                            {torch::kInt16, "I16"},     {torch::kInt8, "I8"},    {torch::kUInt8, "U8"},
                            {torch::kBool, "BOOL"}};
}  // namespace

SafeTensor to_safetensor(const torch::Tensor& t) {
  require_little_endian();
  SafeTensor s;
  for (const auto& d : kDtypes)
    if (d.st == t.scalar_type()) s.dtype = d.name;
  if (s.dtype.empty()) throw std::invalid_argument(std::string("no safetensors dtype for ") + c10::toString(t.scalar_type()));
  auto c = t.detach().to(torch::kCPU).contiguous();
  s.shape = c.sizes().vec();
  s.data.resize(c.numel() * c.element_size());
  if (!s.data.empty()) std::memcpy(s.data.data(), c.data_ptr(), s.data.size());
  return s;
}

torch::Tensor from_safetensor(const SafeTensor& s) {
  require_little_endian();
  for (const auto& d : kDtypes) {
    if (s.dtype != d.name) continue;
    auto t = torch::empty(s.shape, torch::TensorOptions().dtype(d.st));
    if (static_cast<size_t>(t.numel() * t.element_size()) != s.data.size())
      throw std::runtime_error("safetensors tensor of shape " + shape_str(s.shape) + " and dtype " + s.dtype + " has " +
                               std::to_string(s.data.size()) + " bytes");
    if (!s.data.empty()) std::memcpy(t.data_ptr(), s.data.data(), s.data.size());
    return t;
  }
  throw std::invalid_argument("safetensors dtype '" + s.dtype + "' has no LibTorch equivalent here");
}

void write_safetensors(const std::string& path, SafetensorsFile& f) {
  require_little_endian();
  std::vector<std::pair<std::string, const SafeTensor*>> order;
  for (const auto& [name, t] : f.tensors) {
    if (name == "__metadata__") throw std::invalid_argument("'__metadata__' cannot name a tensor");
    size_t es = dtype_size(t.dtype);
    if (static_cast<size_t>(numel_of(t.shape)) * es != t.data.size())
      throw std::invalid_argument("tensor '" + name + "': " + std::to_string(t.data.size()) + " bytes for shape " +
                                  shape_str(t.shape) + " of " + t.dtype);
    order.emplace_back(name, &t);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    size_t sa = dtype_size(a.second->dtype), sb = dtype_size(b.second->dtype);
    return sa != sb ? sa > sb : a.first < b.first;
  });
  json header = json::object();
  if (!f.metadata.empty()) header["__metadata__"] = f.metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : order) {
    header[name] = {{"dtype", t->dtype}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->data.size()}}};
    offset += t->data.size();
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  f.header_bytes = static_cast<int64_t>(8 + h.size());
  f.data_bytes = static_cast<int64_t>(offset);
  atomic_write(path, [&](const std::string& tmp) {
    std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
    if (!os) throw std::runtime_error("cannot write '" + tmp + "'");
    uint64_t n = h.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    os.write(reinterpret_cast<const char*>(len), 8);
    os.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& [name, t] : order)
      if (!t->data.empty()) os.write(reinterpret_cast<const char*>(t->data.data()), static_cast<std::streamsize>(t->data.size()));
    os.flush();
    if (!os) throw std::runtime_error("writing '" + path + "' failed (disk full?)");
  });
}

SafetensorsFile read_safetensors(const std::string& path) {
  require_little_endian();
  std::ifstream is(path, std::ios::binary);
  if (!is) throw std::runtime_error("cannot open '" + path + "'");
  is.seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(is.tellg());
  is.seekg(0);
  auto bad = [&](const std::string& msg) -> std::runtime_error {
    return std::runtime_error("'" + path + "' is not a valid safetensors file: " + msg);
  };
  if (size < 8) throw bad("shorter than the 8-byte header length");
  uint8_t len[8];
  is.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n > static_cast<uint64_t>(size - 8) || n > (uint64_t(100) << 20))
    throw bad("header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size) + " bytes)");
  std::string h(n, '\0');
  is.read(h.data(), static_cast<std::streamsize>(n));
  json header;
  try {
    header = parse_json_text(h, "safetensors header");
  } catch (const std::exception& e) {
    throw bad(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw bad("header is not a JSON object");
  SafetensorsFile f;
  f.header_bytes = static_cast<int64_t>(8 + n);
  f.data_bytes = size - f.header_bytes;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) throw bad("__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) throw bad("__metadata__ value '" + m.key() + "' is not a string");
        f.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    SafeTensor t;
    try {
      t.dtype = e.at("dtype").get<std::string>();
      t.shape = e.at("shape").get<std::vector<int64_t>>();
      auto off = e.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2) throw std::runtime_error("data_offsets needs 2 entries");
      size_t es = dtype_size(t.dtype);
      for (auto d : t.shape)
        if (d < 0) throw std::runtime_error("negative dimension");
      if (off[0] > off[1] || off[1] > static_cast<uint64_t>(f.data_bytes))
        throw std::runtime_error("data_offsets [" + std::to_string(off[0]) + ", " + std::to_string(off[1]) +
                                 "] outside the " + std::to_string(f.data_bytes) + "-byte buffer");
      if (off[1] - off[0] != static_cast<uint64_t>(numel_of(t.shape)) * es)
        throw std::runtime_error("byte range does not match shape " + shape_str(t.shape) + " of " + t.dtype);
      ranges.emplace_back(off[0], off[1], name);
      t.data.resize(off[1] - off[0]);
      is.seekg(f.header_bytes + static_cast<int64_t>(off[0]));
      if (!t.data.empty()) is.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
      if (!is) throw std::runtime_error("read failed");
    } catch (const std::exception& ex) {
      throw bad("tensor '" + name + "': " + ex.what());
    }
    f.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (const auto& [b, e, name] : ranges) {
    if (b != at) throw bad("tensor '" + name + "' starts at " + std::to_string(b) + ", expected " + std::to_string(at) +
                           " (hole or overlap in the byte buffer)");
    at = e;
  }
  if (at != static_cast<uint64_t>(f.data_bytes))
    throw bad("the byte buffer has " + std::to_string(f.data_bytes - static_cast<int64_t>(at)) + " unindexed trailing bytes");
  return f;
}

// ---------------------------------------------------------------- export
namespace {

// Parameters and buffers exported as they are (biases, BN, activation-quantizer state): everything except
// each quant layer's weight and its weight quantizer's internals.
std::vector<std::pair<std::string, torch::Tensor>> plain_tensors(Model& model, const std::vector<NamedQuantLayer>& layers) {
  std::set<std::string> skip_exact;
  std::vector<std::string> skip_prefix;
  for (const auto& l : layers) {
    skip_exact.insert(l.name + ".weight");
    skip_prefix.push_back(l.name + ".wq.");
  }
  auto skipped = [&](const std::string& n) {
    if (skip_exact.count(n)) return true;
    for (const auto& p : skip_prefix)
      if (n.compare(0, p.size(), p) == 0) return true;
    return false;
  };
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model.named_parameters(true))
    if (!skipped(p.key())) out.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers(true))
    if (!skipped(b.key())) out.emplace_back(b.key(), b.value());
  return out;
}

struct EvalMode {
  torch::nn::Module& m;
  std::vector<std::pair<torch::nn::Module*, bool>> modes;
  explicit EvalMode(torch::nn::Module& model) : m(model) {
    modes.emplace_back(&m, m.is_training());
    for (auto& c : m.modules(false)) modes.emplace_back(c.get(), c->is_training());
    m.eval();
  }
  ~EvalMode() {
    for (auto& [mod, t] : modes) mod->train(t);
  }
};

std::shared_ptr<quant::Quantizer> layer_quantizer(const NamedQuantLayer& nl, const LayerPolicy& lp) {
  const auto& wq = nl.layer->weight_quantizer();
  if (lp.weight.is_fp()) {
    if (wq)
      throw std::runtime_error("layer '" + nl.name + "': the policy keeps it in fp32 but a weight quantizer '" +
                               wq->describe() + "' is installed");
    return nullptr;
  }
  auto q = std::dynamic_pointer_cast<quant::Quantizer>(wq);
  if (!q)
    throw std::runtime_error("layer '" + nl.name + "': " +
                             (wq ? "weight quantizer '" + wq->describe() + "' is not a single scheme (derive a policy first)"
                                 : std::string("no weight quantizer installed (apply the policy first)")));
  if (q->spec() != lp.weight)
    throw std::runtime_error("layer '" + nl.name + "': installed weight quantizer '" + q->spec().to_string() +
                             "' differs from the policy's '" + lp.weight.to_string() + "'");
  return q;
}

// Writes one Encoded under `prefix` ("<layer>.weight." or "<layer>.weight.ch<c>."): codes, scale, offset,
// table. Adds the bytes to el; returns the part's metadata.
json put_encoded(SafetensorsFile& f, const std::string& prefix, const quant::Encoded& e, const std::string& layer,
                 const std::vector<int64_t>& shape, ExportLayer& el) {
  if (!e.codes.defined() || !e.scale.defined())
    throw std::runtime_error("layer '" + layer + "': encode() returned no codes/scale");
  if (e.codes.sizes().vec() != shape) throw std::runtime_error("layer '" + layer + "': encode() codes have the wrong shape");
  std::vector<uint8_t> packed;
  try {
    packed = pack_bits(e.codes, e.code_bits);
  } catch (const std::exception& ex) {
    throw std::runtime_error("layer '" + layer + "' (" + el.spec + "): " + ex.what());
  }
  SafeTensor codes;
  codes.dtype = "U8";
  codes.shape = {static_cast<int64_t>(packed.size())};
  codes.data = std::move(packed);
  const int64_t code_bytes = static_cast<int64_t>(codes.data.size());
  int64_t aux = 0;
  f.tensors[prefix + "codes"] = std::move(codes);
  auto put = [&](const char* what, const torch::Tensor& t) {
    auto st = to_safetensor(t.to(torch::kFloat32));
    aux += static_cast<int64_t>(st.data.size());
    f.tensors[prefix + what] = std::move(st);
  };
  put("scale", e.scale);
  if (e.offset.defined()) put("offset", e.offset);
  if (e.table.defined()) put("table", e.table);
  if (code_bytes != e.code_bytes() || aux != e.aux_bytes())
    throw std::runtime_error("layer '" + layer + "': packed bytes disagree with Encoded::stored_bytes()");
  el.code_bits = std::max(el.code_bits == 32 ? 0 : el.code_bits, e.code_bits);
  el.code_bytes += code_bytes;
  el.aux_bytes += aux;
  return {{"shape", shape},       {"code_bits", e.code_bits},        {"grid_base", e.grid_base},
          {"axis", e.axis},       {"table", e.table.defined()},      {"offset", e.offset.defined()}};
}

}  // namespace

ExportReport export_model(Model& model, const Policy& policy, const std::string& path) {
  check_policy(policy, model);
  auto layers = quant_layers(model);
  EvalMode eval(model);
  torch::NoGradGuard ng;
  SafetensorsFile f;
  ExportReport rep;
  json layer_meta = json::object();
  for (const auto& nl : layers) {
    const LayerPolicy& lp = *policy.find(nl.name);
    auto cwq = std::dynamic_pointer_cast<quant::ChannelWeightQuantizer>(nl.layer->weight_quantizer());
    auto q = cwq ? nullptr : layer_quantizer(nl, lp);
    ExportLayer el;
    el.name = nl.name;
    el.spec = lp.weight.to_string();
    el.policy_bytes = lp.weight_bytes;
    if (cwq) {
      // Per-channel bits and/or bias correction (format_version 2 policies).
      if (lp.weight.is_fp() || cwq->spec() != lp.weight || cwq->channel_bits() != lp.channel_bits ||
          quant::correction_name(cwq->correction()) !=
              std::string(quant::correction_name(quant::parse_correction(lp.bias_correction))))
        throw std::runtime_error("layer '" + nl.name + "': installed quantizer '" + cwq->describe() +
                                 "' differs from the policy's entry (weight '" + lp.weight.to_string() + "')");
      const torch::Tensor w = nl.layer->weight_param();
      auto parts = cwq->encode_parts(w);
      json pm = json::array();
      std::vector<int64_t> shape = w.sizes().vec();
      if (parts.size() > 1) shape[0] = 1;
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::string prefix =
            nl.name + (parts.size() == 1 ? std::string(".weight.") : ".weight.ch" + std::to_string(i) + ".");
        pm.push_back(put_encoded(f, prefix, parts[i], nl.name, shape, el));
      }
      auto put_corr = [&](const char* what, const torch::Tensor& t) {
        auto st = to_safetensor(t.to(torch::kFloat32));
        el.aux_bytes += static_cast<int64_t>(st.data.size());
        f.tensors[nl.name + ".weight." + what] = std::move(st);
      };
      if (cwq->correction() == quant::Correction::MeanVar) put_corr("corr_scale", cwq->corr_scale);
      if (cwq->correction() != quant::Correction::None) put_corr("corr_shift", cwq->corr_shift);
      layer_meta[nl.name] = {{"spec", el.spec},
                             {"shape", nl.layer->weight_shape()},
                             {"parts", pm},
                             {"channel_bits", cwq->channel_bits()},
                             {"correction", quant::correction_name(cwq->correction())}};
    } else if (!q) {
      auto t = to_safetensor(nl.layer->weight_param().to(torch::kFloat32));
      el.code_bytes = static_cast<int64_t>(t.data.size());
      f.tensors[nl.name + ".weight"] = std::move(t);
      layer_meta[nl.name] = {{"spec", "fp32"}, {"shape", nl.layer->weight_shape()}};
    } else {
      quant::Encoded e = q->encode(nl.layer->weight_param());
      if (!e.codes.defined() || !e.scale.defined())
        throw std::runtime_error("layer '" + nl.name + "': encode() returned no codes/scale");
      if (e.codes.sizes() != nl.layer->weight_param().sizes())
        throw std::runtime_error("layer '" + nl.name + "': encode() codes have the wrong shape");
      std::vector<uint8_t> packed;
      try {
        packed = pack_bits(e.codes, e.code_bits);
      } catch (const std::exception& ex) {
        throw std::runtime_error("layer '" + nl.name + "' (" + el.spec + "): " + ex.what());
      }
      SafeTensor codes;
      codes.dtype = "U8";
      codes.shape = {static_cast<int64_t>(packed.size())};
      codes.data = std::move(packed);
      el.code_bits = e.code_bits;
      el.code_bytes = static_cast<int64_t>(codes.data.size());
      f.tensors[nl.name + ".weight.codes"] = std::move(codes);
      auto put = [&](const char* what, const torch::Tensor& t) {
        auto s = to_safetensor(t.to(torch::kFloat32));
        el.aux_bytes += static_cast<int64_t>(s.data.size());
        f.tensors[nl.name + ".weight." + what] = std::move(s);
      };
      put("scale", e.scale);
      if (e.offset.defined()) put("offset", e.offset);
      if (e.table.defined()) put("table", e.table);
      layer_meta[nl.name] = {{"spec", el.spec},
                             {"shape", nl.layer->weight_shape()},
                             {"code_bits", e.code_bits},
                             {"grid_base", e.grid_base},
                             {"axis", e.axis},
                             {"table", e.table.defined()},
                             {"offset", e.offset.defined()}};
      if (el.code_bytes != e.code_bytes() || el.aux_bytes != e.aux_bytes())
        throw std::runtime_error("layer '" + nl.name + "': packed bytes disagree with Encoded::stored_bytes()");
    }
    if (el.code_bytes + el.aux_bytes != lp.weight_bytes)
      throw std::runtime_error("layer '" + nl.name + "' (" + el.spec + "): export writes " +
                               std::to_string(el.code_bytes + el.aux_bytes) + " bytes (codes " +
                               std::to_string(el.code_bytes) + " + dequantisation data " + std::to_string(el.aux_bytes) +
                               ") but the policy claims " + std::to_string(lp.weight_bytes) +
                               " (the scheme's storage() and encode() disagree)");
    rep.weight_bytes += el.code_bytes + el.aux_bytes;
    rep.layers.push_back(el);
  }
  for (const auto& [name, t] : plain_tensors(model, layers)) {
    auto s = to_safetensor(t);
    rep.other_bytes += static_cast<int64_t>(s.data.size());
    if (f.tensors.count(name)) throw std::runtime_error("tensor name clash on '" + name + "'");
    f.tensors[name] = std::move(s);
  }
  rep.policy_weight_bytes = policy.totals.weight_bytes;
  if (rep.weight_bytes != rep.policy_weight_bytes)
    throw std::runtime_error("export writes " + std::to_string(rep.weight_bytes) + " weight bytes, the policy's total is " +
                             std::to_string(rep.policy_weight_bytes));
  f.metadata["format"] = kFormat;
  f.metadata["format_version"] = kFormatVersion;
  f.metadata["autoqnn_version"] = AUTOQNN_VERSION;
  f.metadata["model"] = model.name();
  f.metadata["policy"] = policy.to_json().dump();  // compact: the header stays small
  f.metadata["layers"] = layer_meta.dump();
  rep.tensors = static_cast<int64_t>(f.tensors.size());
  write_safetensors(path, f);
  rep.header_bytes = f.header_bytes;
  rep.file_bytes = f.header_bytes + f.data_bytes;
  return rep;
}

// ---------------------------------------------------------------- verify
namespace {
// Bitwise comparison of two float tensors; +0 / -0 pairs are counted separately (equal values).
void compare_bits(const torch::Tensor& got, const torch::Tensor& want, const std::string& what, VerifyReport& r) {
  auto a = got.detach().to(torch::kCPU).contiguous();
  auto b = want.detach().to(torch::kCPU).contiguous();
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) {
    std::ostringstream os;
    os << what << ": shape/dtype " << a.sizes() << " " << a.scalar_type() << " in the file, " << b.sizes() << " "
       << b.scalar_type() << " in the model";
    r.problems.push_back(os.str());
    return;
  }
  if (a.numel() == 0) return;
  if (a.is_floating_point()) {
    TORCH_CHECK(a.scalar_type() == torch::kFloat32 || a.scalar_type() == torch::kFloat64, "unexpected float type");
    auto ia = a.scalar_type() == torch::kFloat32 ? a.view(torch::kInt32) : a.view(torch::kInt64);
    auto ib = b.scalar_type() == torch::kFloat32 ? b.view(torch::kInt32) : b.view(torch::kInt64);
    auto neq = ia.ne(ib);
    if (!neq.any().item<bool>()) return;
    auto zero = a.eq(0).logical_and(b.eq(0));
    int64_t sz = neq.logical_and(zero).sum().item<int64_t>();
    int64_t real = neq.logical_and(zero.logical_not()).sum().item<int64_t>();
    r.signed_zero_diffs += sz;
    if (real > 0) {
      double maxdiff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
      r.problems.push_back(what + ": " + std::to_string(real) + " of " + std::to_string(a.numel()) +
                           " values differ (max |diff| " + std::to_string(maxdiff) + ")");
    }
  } else if (!torch::equal(a, b)) {
    r.problems.push_back(what + ": values differ");
  }
}
}  // namespace

VerifyReport verify_export(Model& model, const Policy& policy, const std::string& path) {
  VerifyReport r;
  SafetensorsFile f = read_safetensors(path);
  auto meta = [&](const std::string& k) -> std::string {
    auto it = f.metadata.find(k);
    if (it == f.metadata.end()) throw std::runtime_error("'" + path + "': __metadata__ lacks '" + k + "' (not an autoqnn export)");
    return it->second;
  };
  if (meta("format") != kFormat) throw std::runtime_error("'" + path + "': not an autoqnn packed export");
  if (meta("model") != model.name())
    r.problems.push_back("the file holds model '" + meta("model") + "', not '" + model.name() + "'");
  try {
    Policy recorded = parse_policy(meta("policy"), path + " (__metadata__.policy)");
    if (recorded.dump() != policy.dump()) r.problems.push_back("the policy recorded in the file differs from the given one");
  } catch (const PolicyError& e) {
    r.problems.push_back(e.what());
  }
  json layer_meta;
  try {
    layer_meta = parse_json_text(meta("layers"), path + " __metadata__.layers");
  } catch (const std::exception& e) {
    throw std::runtime_error("'" + path + "': __metadata__.layers is not JSON: " + e.what());
  }

  auto layers = quant_layers(model);
  EvalMode eval(model);
  torch::NoGradGuard ng;
  std::set<std::string> used;
  auto tensor = [&](const std::string& name) -> const SafeTensor* {
    auto it = f.tensors.find(name);
    if (it == f.tensors.end()) {
      r.problems.push_back("tensor '" + name + "' missing from the file");
      return nullptr;
    }
    used.insert(name);
    ++r.tensors_checked;
    return &it->second;
  };
  int64_t weight_bytes = 0;
  for (const auto& nl : layers) {
    const LayerPolicy* lp = policy.find(nl.name);
    if (!lp) {
      r.problems.push_back("layer '" + nl.name + "' is not in the policy");
      continue;
    }
    ++r.layers_checked;
    torch::Tensor want = nl.layer->effective_weight().to(torch::kCPU);
    if (lp->weight.is_fp()) {
      if (const SafeTensor* t = tensor(nl.name + ".weight")) {
        weight_bytes += static_cast<int64_t>(t->data.size());
        compare_bits(from_safetensor(*t), want, "layer '" + nl.name + "' weight", r);
        r.weights_checked += want.numel();
      }
      continue;
    }
    if (!layer_meta.contains(nl.name)) {
      r.problems.push_back("layer '" + nl.name + "' has no entry in __metadata__.layers");
      continue;
    }
    const json& lm = layer_meta[nl.name];
    try {
      if (lm.at("spec").get<std::string>() != lp->weight.to_string())
        r.problems.push_back("layer '" + nl.name + "': the file says '" + lm.at("spec").get<std::string>() +
                             "', the policy '" + lp->weight.to_string() + "'");
      if (lm.contains("parts")) {
        // Per-channel bits / bias correction: parts dequantized, concatenated along the output channels,
        // then out = base * corr_scale + corr_shift per channel (float32, in that order).
        std::vector<torch::Tensor> pieces;
        const auto& parts = lm.at("parts");
        bool complete = true;
        for (size_t i = 0; i < parts.size(); ++i) {
          const json& pj = parts[i];
          const std::string prefix =
              nl.name + (parts.size() == 1 ? std::string(".weight.") : ".weight.ch" + std::to_string(i) + ".");
          const SafeTensor* codes = tensor(prefix + "codes");
          const SafeTensor* scale = tensor(prefix + "scale");
          if (!codes || !scale) {
            complete = false;
            continue;
          }
          quant::Encoded e;
          auto shape = pj.at("shape").get<std::vector<int64_t>>();
          e.code_bits = pj.at("code_bits").get<int>();
          e.grid_base = pj.at("grid_base").get<double>();
          e.axis = pj.at("axis").get<int64_t>();
          if (codes->dtype != "U8") throw std::runtime_error("codes are " + codes->dtype + ", expected U8");
          e.codes = unpack_bits(codes->data.data(), codes->data.size(), numel_of(shape), e.code_bits).reshape(shape);
          e.scale = from_safetensor(*scale);
          weight_bytes += static_cast<int64_t>(codes->data.size() + scale->data.size());
          for (const char* what : {"offset", "table"}) {
            if (!pj.at(what).get<bool>()) continue;
            if (const SafeTensor* t = tensor(prefix + what)) {
              (std::string(what) == "offset" ? e.offset : e.table) = from_safetensor(*t);
              weight_bytes += static_cast<int64_t>(t->data.size());
            } else {
              complete = false;
            }
          }
          pieces.push_back(e.dequantize());
        }
        if (!complete) continue;
        torch::Tensor got = torch::cat(pieces, 0);
        std::vector<int64_t> cs(got.dim(), 1);
        cs[0] = got.size(0);
        const std::string corr = lm.at("correction").get<std::string>();
        if (corr == "mean+var") {
          if (const SafeTensor* t = tensor(nl.name + ".weight.corr_scale")) {
            got = got * from_safetensor(*t).reshape(cs);
            weight_bytes += static_cast<int64_t>(t->data.size());
          }
        }
        if (corr == "mean" || corr == "mean+var") {
          if (const SafeTensor* t = tensor(nl.name + ".weight.corr_shift")) {
            got = got + from_safetensor(*t).reshape(cs);
            weight_bytes += static_cast<int64_t>(t->data.size());
          }
        }
        compare_bits(got, want, "layer '" + nl.name + "' (" + lp->weight.to_string() + ", per-channel parts) dequantized weight", r);
        r.weights_checked += want.numel();
        continue;
      }
      const SafeTensor* codes = tensor(nl.name + ".weight.codes");
      const SafeTensor* scale = tensor(nl.name + ".weight.scale");
      if (!codes || !scale) continue;
      quant::Encoded e;
      auto shape = lm.at("shape").get<std::vector<int64_t>>();
      e.code_bits = lm.at("code_bits").get<int>();
      e.grid_base = lm.at("grid_base").get<double>();
      e.axis = lm.at("axis").get<int64_t>();
      if (codes->dtype != "U8") throw std::runtime_error("codes are " + codes->dtype + ", expected U8");
      e.codes = unpack_bits(codes->data.data(), codes->data.size(), numel_of(shape), e.code_bits).reshape(shape);
      e.scale = from_safetensor(*scale);
      weight_bytes += static_cast<int64_t>(codes->data.size() + scale->data.size());
      if (lm.at("offset").get<bool>()) {
        if (const SafeTensor* t = tensor(nl.name + ".weight.offset")) {
          e.offset = from_safetensor(*t);
          weight_bytes += static_cast<int64_t>(t->data.size());
        }
      }
      if (lm.at("table").get<bool>()) {
        if (const SafeTensor* t = tensor(nl.name + ".weight.table")) {
          e.table = from_safetensor(*t);
          weight_bytes += static_cast<int64_t>(t->data.size());
        }
      }
      compare_bits(e.dequantize(), want, "layer '" + nl.name + "' (" + lp->weight.to_string() + ") dequantized weight", r);
      r.weights_checked += want.numel();
    } catch (const std::exception& ex) {
      r.problems.push_back("layer '" + nl.name + "': " + ex.what());
    }
  }
  if (weight_bytes != policy.totals.weight_bytes)
    r.problems.push_back("the file holds " + std::to_string(weight_bytes) + " weight bytes (codes + dequantisation data), "
                         "the policy claims " + std::to_string(policy.totals.weight_bytes));
  for (const auto& [name, t] : plain_tensors(model, layers))
    if (const SafeTensor* s = tensor(name)) compare_bits(from_safetensor(*s), t, "tensor '" + name + "'", r);
  for (const auto& [name, t] : f.tensors)
    if (!used.count(name)) r.problems.push_back("unexpected tensor '" + name + "' in the file");
  r.ok = r.problems.empty();
  return r;
}

}  // namespace autoqnn
