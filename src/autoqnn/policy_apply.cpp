// apply_policy: installs a checked policy's quantizers into the model's layer slots.
#include "autoqnn/policy.h"

#include "quantizers/channel_quant.h"
#include "quantizers/registry.h"

namespace autoqnn {

using quant::Role;

void apply_policy(Model& model, const Policy& p) {
  check_policy(p, model);
  for (auto& nl : quant_layers(model)) {
    const LayerPolicy* l = p.find(nl.name);
    FakeQuantPtr wq, aq;
    try {
      if (!l->weight.is_fp() && (!l->channel_bits.empty() || !l->bias_correction.empty()))
        wq = std::make_shared<quant::ChannelWeightQuantizer>(l->weight, l->channel_bits,
                                                             quant::parse_correction(l->bias_correction), l->shape[0]);
      else
        wq = quant::make_quantizer(l->weight, Role::Weight);
      if (!l->act.is_fp() && !l->act_channel_bits.empty())
        aq = std::make_shared<quant::ChannelActQuantizer>(l->act, l->act_channel_bits);
      else
        aq = quant::make_quantizer(l->act, Role::Activation);
    } catch (const std::exception& e) {
      throw PolicyError("layer '" + l->name + "': " + e.what());
    }
    // Keep new quantizers on the layer's device and in the model's mode.
    auto dev = nl.layer->weight_param().device();
    if (wq) {
      wq->to(dev);
      wq->train(nl.module->is_training());
    }
    if (aq) {
      aq->to(dev);
      aq->train(nl.module->is_training());
    }
    nl.layer->set_weight_quantizer(wq);
    nl.layer->set_act_quantizer(aq);
  }
}

}  // namespace autoqnn
