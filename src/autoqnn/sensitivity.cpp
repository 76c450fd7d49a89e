#include "autoqnn/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>

#include "autoqnn/afp_search.h"
#include "autoqnn/convert.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "quantizers/registry.h"

namespace autoqnn::ptq {

using quant::QuantSpec;
using quant::Role;

namespace {

struct ClearQuantizers {
  QuantLayer* l;
  ~ClearQuantizers() {
    l->set_weight_quantizer(nullptr);
    l->set_act_quantizer(nullptr);
  }
};

// mse, sqnr_db, afp_distance of the layer's weight under its installed weight quantizer
void fill_weight_error(const NamedQuantLayer& nl, SensitivityRow& r) {
  auto w = nl.layer->weight_param().detach().to(torch::kFloat64);
  auto q = nl.layer->effective_weight().detach().to(torch::kFloat64);
  const double err = (w - q).pow(2).sum().item<double>(), sig = w.pow(2).sum().item<double>();
  r.mse = err / static_cast<double>(w.numel());
  r.sqnr_db = err > 0 ? 10.0 * std::log10(sig / err) : std::numeric_limits<double>::infinity();
  r.afp_distance = afp_distance(w, q);
}

SensitivityRow weight_error(Model& model, const NamedQuantLayer& nl, const QuantSpec& ws,
                            const SensitivityOptions& opt) {
  SensitivityRow r;
  auto wq = quant::make_quantizer(ws, Role::Weight);
  if (wq) wq->to(opt.device);
  nl.layer->set_weight_quantizer(wq);
  ClearQuantizers clear{nl.layer};
  CalibOptions co;  // the weight quantizers' own calibration (no data)
  co.batches = 0;
  co.device = opt.device;
  calibrate_model(model, TensorDataset{}, co);
  torch::NoGradGuard ng;
  model.eval();
  fill_weight_error(nl, r);
  return r;
}

// Stands in a layer's act slot while every act candidate of that layer is fitted at once: each candidate
// sees the layer's FP32 input (calibration: calibrate + a train-mode forward, as calibrate_model does;
// measuring: its squared error), and the FP32 input goes on, so every layer's inputs are those of the FP32
// model -- what each candidate would see with only its own layer quantized.
class CandidateSlot : public quant::FakeQuantizer {
 public:
  std::vector<quant::QuantizerPtr> candidates;
  std::vector<torch::Tensor> sum_sq;  // measuring: per candidate, on the device (read once at the end)
  int64_t count = 0;
  bool measuring = false;
  torch::Tensor forward(const torch::Tensor& x) override {
    for (size_t i = 0; i < candidates.size(); ++i) {
      auto& q = candidates[i];
      if (!measuring) {
        q->calibrate(x);
        q->forward(x);
        continue;
      }
      auto e = (q->forward(x) - x).to(torch::kFloat64).pow(2).sum();
      if (sum_sq.size() <= i) sum_sq.push_back(e);
      else sum_sq[i] += e;
    }
    if (measuring) count += x.numel();
    return x;
  }
  std::string describe() const override { return "act candidates fitted at once"; }
};

// mean (Q(a) - a)^2 of every act candidate of every layer ("layer|spec"): the candidates calibrated on
// opt.calib_batches batches (shuffled by seed), then measured on the first batch of `calib`. One forward
// per batch serves every candidate of every layer.
std::map<std::string, double> act_errors(
    Model& model, const std::vector<NamedQuantLayer>& layers,
    const std::vector<std::vector<std::pair<QuantSpec, QuantSpec>>>& candidates, const TensorDataset& calib,
    const SensitivityOptions& opt) {
  std::vector<std::shared_ptr<CandidateSlot>> slots(layers.size());
  std::vector<std::vector<std::string>> specs(layers.size());
  bool any = false;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto slot = std::make_shared<CandidateSlot>();
    for (const auto& [ws, as] : candidates[i]) {
      const std::string key = as.to_string();
      if (std::find(specs[i].begin(), specs[i].end(), key) != specs[i].end()) continue;
      auto q = quant::make_quantizer(as, Role::Activation);
      if (!q) continue;  // fp32
      q->to(opt.device);
      q->train(true);  // running statistics update in train mode
      specs[i].push_back(key);
      slot->candidates.push_back(q);
    }
    if (!slot->candidates.empty()) {
      slots[i] = slot;
      any = true;
    }
  }
  std::map<std::string, double> out;
  if (!any) return out;
  if (calib.size() == 0) throw std::invalid_argument("sensitivity: act candidates need calibration data");
  struct Clear {
    const std::vector<NamedQuantLayer>& layers;
    ~Clear() {
      for (const auto& l : layers) l.layer->set_act_quantizer(nullptr);
    }
  } clear{layers};
  for (size_t i = 0; i < layers.size(); ++i)
    if (slots[i]) layers[i].layer->set_act_quantizer(slots[i]);
  torch::NoGradGuard ng;
  model.eval();
  BatchIterator it(calib, opt.batch_size, /*shuffle=*/true, opt.seed);
  it.start_epoch(0);
  torch::Tensor x, y;
  for (int64_t b = 0; b < std::max<int64_t>(opt.calib_batches, 1) && it.next(x, y); ++b) model.forward(x.to(opt.device));
  for (auto& s : slots)
    if (s) {
      s->measuring = true;
      for (auto& q : s->candidates) q->eval();
    }
  model.forward(calib.head(opt.batch_size).images.to(opt.device));
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!slots[i] || slots[i]->sum_sq.empty()) continue;  // a layer the measuring batch did not reach
    auto sums = torch::stack(slots[i]->sum_sq).to(torch::kCPU);
    for (size_t k = 0; k < specs[i].size(); ++k)
      out[layers[i].name + "|" + specs[i][k]] = sums[k].item<double>() / static_cast<double>(slots[i]->count);
  }
  return out;
}

}  // namespace

std::vector<SensitivityRow> analyze_sensitivity(
    Model& model, const std::vector<std::vector<std::pair<QuantSpec, QuantSpec>>>& candidates,
    const TensorDataset& calib, const TensorDataset& test, const SensitivityOptions& opt, double* fp_top1_out) {
  auto layers = quant_layers(model);
  if (candidates.size() != layers.size())
    throw std::invalid_argument("sensitivity: " + std::to_string(candidates.size()) + " candidate lists for " +
                                std::to_string(layers.size()) + " layers");
  for (const auto& l : layers)
    if (l.layer->weight_quantizer() || l.layer->act_quantizer())
      throw std::invalid_argument("sensitivity needs an FP32 model without quantizers (layer '" + l.name + "')");
  model.to(opt.device);
  double fp_top1 = 0;
  if (opt.accuracy) fp_top1 = evaluate_sharded(model, test, opt.batch_size, opt.device).top1;
  if (fp_top1_out) *fp_top1_out = fp_top1;
  std::map<std::string, double> act_mse;  // without accuracy: "layer|act spec" -> error
  if (!opt.accuracy) {
    act_mse = act_errors(model, layers, candidates, calib, opt);
    for (const auto& [key, e] : act_mse) log_info("analyze: " + key.substr(0, key.find('|')) + " act " +
                                                  key.substr(key.find('|') + 1) + ": mse " + std::to_string(e));
  }
  std::vector<SensitivityRow> rows;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& nl = layers[i];
    std::map<std::string, SensitivityRow> weight_fit;  // without accuracy: per weight spec
    for (const auto& [ws, as] : candidates[i]) {
      SensitivityRow r;
      r.layer = nl.name;
      r.index = static_cast<int64_t>(i);
      r.weight = ws.to_string();
      r.act = as.to_string();
      r.weight_bytes = quant::storage_cost(ws, nl.layer->weight_shape(), Role::Weight).bytes();
      if (!opt.accuracy) {
        auto wf = weight_fit.find(r.weight);
        if (wf == weight_fit.end()) {
          wf = weight_fit.emplace(r.weight, weight_error(model, nl, ws, opt)).first;
          log_info("analyze: " + nl.name + " " + r.weight + ": sqnr " + std::to_string(wf->second.sqnr_db) + " dB");
        }
        r.mse = wf->second.mse;
        r.sqnr_db = wf->second.sqnr_db;
        r.afp_distance = wf->second.afp_distance;
        auto af = act_mse.find(r.layer + "|" + r.act);
        r.act_mse = af == act_mse.end() ? 0.0 : af->second;
        rows.push_back(r);
        continue;
      }
      auto wq = quant::make_quantizer(ws, Role::Weight);
      auto aq = quant::make_quantizer(as, Role::Activation);
      if (wq) wq->to(opt.device);
      if (aq) aq->to(opt.device);
      nl.layer->set_weight_quantizer(wq);
      nl.layer->set_act_quantizer(aq);
      ClearQuantizers clear{nl.layer};
      CalibOptions co;
      co.batches = aq ? opt.calib_batches : 0;
      co.batch_size = opt.batch_size;
      co.seed = opt.seed;
      co.device = opt.device;
      calibrate_model(model, calib, co);
      {
        torch::NoGradGuard ng;
        model.eval();
        fill_weight_error(nl, r);
      }
      r.top1 = evaluate_sharded(model, test, opt.batch_size, opt.device).top1;  // data parallel: shards reduced
      r.drop = fp_top1 - r.top1;
      log_info("analyze: " + nl.name + " " + r.weight + " / " + r.act + ": sqnr " + std::to_string(r.sqnr_db) +
               " dB, drop " + std::to_string(100 * r.drop) + " %");
      rows.push_back(r);
    }
  }
  return rows;
}

namespace {
const char* kHeader = "layer,index,weight,act,weight_bytes,mse,sqnr_db,afp_distance,top1,drop";
std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream os;
  os << std::setprecision(10) << v;
  return os.str();
}
}  // namespace

std::string sensitivity_csv(const std::vector<SensitivityRow>& rows) {
  std::ostringstream os;
  os << kHeader << "\n";
  for (const auto& r : rows)
    os << r.layer << "," << r.index << "," << r.weight << "," << r.act << "," << r.weight_bytes << "," << num(r.mse)
       << "," << num(r.sqnr_db) << "," << num(r.afp_distance) << "," << num(r.top1) << "," << num(r.drop) << "\n";
  return os.str();
}

std::vector<SensitivityRow> parse_sensitivity_csv(const std::string& text, const std::string& source) {
  std::istringstream is(text);
  std::string line;
  if (!std::getline(is, line) || line != kHeader)
    throw std::runtime_error(source + ":1: not a sensitivity table (expected the header '" + std::string(kHeader) + "')");
  std::vector<SensitivityRow> rows;
  int64_t ln = 1;
  while (std::getline(is, line)) {
    ++ln;
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell);
    if (f.size() != 10)
      throw std::runtime_error(source + ":" + std::to_string(ln) + ": expected 10 fields, got " + std::to_string(f.size()));
    try {
      SensitivityRow r;
      r.layer = f[0];
      r.index = std::stoll(f[1]);
      r.weight = f[2];
      r.act = f[3];
      r.weight_bytes = std::stoll(f[4]);
      r.mse = std::stod(f[5]);
      r.sqnr_db = std::stod(f[6]);
      r.afp_distance = std::stod(f[7]);
      r.top1 = std::stod(f[8]);
      r.drop = std::stod(f[9]);
      rows.push_back(r);
    } catch (const std::exception&) {
      throw std::runtime_error(source + ":" + std::to_string(ln) + ": malformed number in '" + line + "'");
    }
  }
  return rows;
}

std::string sensitivity_table(const std::vector<SensitivityRow>& rows, double fp_top1) {
  std::ostringstream os;
  os << "FP32 top-1 " << std::fixed << std::setprecision(2) << 100 * fp_top1 << " %\n";
  os << std::left << std::setw(18) << "layer" << std::setw(22) << "weight" << std::setw(18) << "act" << std::right
     << std::setw(9) << "bytes" << std::setw(12) << "mse" << std::setw(9) << "sqnr dB" << std::setw(10) << "afp dist"
     << std::setw(9) << "top-1 %" << std::setw(9) << "drop %" << "\n";
  for (const auto& r : rows) {
    os << std::left << std::setw(18) << r.layer << std::setw(22) << r.weight << std::setw(18) << r.act << std::right
       << std::setw(9) << r.weight_bytes << std::setw(12) << std::scientific << std::setprecision(3) << r.mse
       << std::fixed << std::setprecision(2) << std::setw(9) << r.sqnr_db << std::setw(10) << std::setprecision(4)
       << r.afp_distance << std::setprecision(2) << std::setw(9) << 100 * r.top1 << std::setw(9) << 100 * r.drop << "\n";
  }
  return os.str();
}

}  // namespace autoqnn::ptq
