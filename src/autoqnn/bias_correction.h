// Weight bias correction (Banner et al. 2019, section 5): per output channel c of a quantized weight,
//   mean:      W^q_c <- W^q_c - E[W^q_c] + E[W_c]
//   mean+var:  W^q_c <- xi_c (W^q_c - E[W^q_c]) + E[W_c],   xi_c = ||W_c - E W_c|| / ||W^q_c - E W^q_c||
// realised by quant::ChannelWeightQuantizer (corr_scale = xi, corr_shift = E W_c - xi E W^q_c; stored and
// exported). docs/ptq.md.
#pragma once
#include "autoqnn/model.h"

namespace autoqnn::ptq {

// Fits the correction of every installed ChannelWeightQuantizer that has one, from the layer's current
// weight. Returns the number of layers corrected.
int fit_bias_correction(Model& model);

// Largest |E[out_c] - E[W_c]| over the output channels of a layer's effective weight (diagnostics, tests).
double max_channel_mean_error(QuantLayer& layer);

}  // namespace autoqnn::ptq
