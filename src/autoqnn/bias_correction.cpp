#include "autoqnn/bias_correction.h"

#include "quantizers/channel_quant.h"

namespace autoqnn::ptq {

int fit_bias_correction(Model& model) {
  int n = 0;
  for (auto& l : quant_layers(model)) {
    auto q = std::dynamic_pointer_cast<quant::ChannelWeightQuantizer>(l.layer->weight_quantizer());
    if (!q || q->correction() == quant::Correction::None) continue;
    q->fit_correction(l.layer->weight_param().detach());
    ++n;
  }
  return n;
}

double max_channel_mean_error(QuantLayer& layer) {
  torch::NoGradGuard ng;
  auto w = layer.weight_param().detach();
  auto q = layer.effective_weight().detach();
  const int64_t C = w.size(0);
  auto e = q.to(torch::kFloat64).reshape({C, -1}).mean(1) - w.to(torch::kFloat64).reshape({C, -1}).mean(1);
  return e.abs().max().item<double>();
}

}  // namespace autoqnn::ptq
