#include "autoqnn/convert.h"

#include "autoqnn/runtime.h"
#include "quantizers/channel_quant.h"

namespace autoqnn {

namespace {

// Stands in an activation slot during calibration: calibrate(x) on the quantizer, then its forward.
class CalibHook : public quant::FakeQuantizer {
 public:
  explicit CalibHook(std::shared_ptr<quant::Quantizer> q) : q_(std::move(q)) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    q_->calibrate(x);
    return q_->forward(x);
  }
  std::string describe() const override { return q_->describe(); }

 private:
  std::shared_ptr<quant::Quantizer> q_;
};

}  // namespace

CalibStats calibrate_model(Model& model, const TensorDataset& data, const CalibOptions& opt) {
  if (opt.batches < 0) throw std::invalid_argument("calibration batches must be >= 0");
  if (opt.batch_size <= 0) throw std::invalid_argument("calibration batch size must be positive");
  CalibStats st;
  torch::NoGradGuard ng;

  // Every module's own training flag, restored in pre-order at the end (also on an exception).
  std::vector<std::pair<torch::nn::Module*, bool>> modes;
  modes.emplace_back(&model, model.is_training());
  for (auto& m : model.modules(/*include_self=*/false)) modes.emplace_back(m.get(), m->is_training());
  auto layers = quant_layers(model);
  struct Restore {
    std::vector<std::pair<torch::nn::Module*, bool>>& modes;
    std::vector<NamedQuantLayer>& layers;
    std::vector<std::pair<QuantLayer*, FakeQuantPtr>> swapped;
    std::vector<std::shared_ptr<quant::ChannelActQuantizer>> flagged;
    ~Restore() {
      for (auto& q : flagged) q->calibrate_on_forward = false;
      for (auto& [l, q] : swapped) l->set_act_quantizer(q);
      for (auto& [m, t] : modes) m->train(t);
    }
  } restore{modes, layers, {}};

  for (auto& l : layers) {
    if (auto q = std::dynamic_pointer_cast<quant::Quantizer>(l.layer->weight_quantizer())) {
      q->calibrate(l.layer->weight_param().detach());
      ++st.weight_quantizers;
    }
    if (auto q = std::dynamic_pointer_cast<quant::ChannelWeightQuantizer>(l.layer->weight_quantizer())) {
      q->calibrate(l.layer->weight_param().detach());
      q->fit_correction(l.layer->weight_param().detach());  // bias correction (no-op without one)
      ++st.weight_quantizers;
    }
  }
  if (opt.batches == 0 || data.size() == 0) return st;

  model.eval();
  for (auto& l : layers) {
    auto aq = l.layer->act_quantizer();
    if (!aq) continue;
    aq->train(true);  // running statistics update in train mode; nothing else does
    if (auto q = std::dynamic_pointer_cast<quant::Quantizer>(aq)) {
      restore.swapped.emplace_back(l.layer, aq);
      l.layer->set_act_quantizer(std::make_shared<CalibHook>(q));
    }
    if (auto q = std::dynamic_pointer_cast<quant::ChannelActQuantizer>(aq)) {
      q->calibrate_on_forward = true;
      restore.flagged.push_back(q);
    }
    ++st.act_quantizers;
  }
  if (st.act_quantizers == 0) return st;  // forward passes would change nothing

  BatchIterator it(data, opt.batch_size, /*shuffle=*/true, opt.seed);
  it.start_epoch(0);
  torch::Tensor x, y;
  while (st.batches < opt.batches && it.next(x, y)) {
    model.forward(x.to(opt.device));
    ++st.batches;
    st.images += x.size(0);
  }
  return st;
}

std::string calib_summary(const CalibStats& st) {
  std::string s = "calibrated " + std::to_string(st.weight_quantizers) + " weight quantizer(s)";
  if (st.act_quantizers == 0) return s + " (no activation quantizers: no data needed)";
  return s + " and " + std::to_string(st.act_quantizers) + " activation quantizer(s) on " + std::to_string(st.images) +
         " images";
}

CalibStats convert_model(Model& model, const Policy& policy, const TensorDataset* data, const CalibOptions& opt) {
  apply_policy(model, policy);
  model.to(opt.device);
  TensorDataset none;
  return calibrate_model(model, data ? *data : none, opt);
}

CheckpointMeta quantized_meta(const Model& model, const Policy& policy, const std::string& dataset, int64_t epoch) {
  CheckpointMeta m;
  m.kind = "quantized";
  m.model = model.name();
  m.config = model.config();
  m.dataset = dataset;
  m.policy = policy.to_json();
  m.epoch = epoch;
  return m;
}

}  // namespace autoqnn
