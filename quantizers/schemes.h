// Factory functions of the schemes (one .cpp per scheme); registry.cpp puts them in the table.
#pragma once
#include "quantizers/quantizer.h"

namespace autoqnn::quant {

QuantizerPtr make_binary(const QuantSpec&, Role);
QuantizerPtr make_ternary(const QuantSpec&, Role);
QuantizerPtr make_fixed(const QuantSpec&, Role);
QuantizerPtr make_uniform(const QuantSpec&, Role);
QuantizerPtr make_zoomq(const QuantSpec&, Role);
QuantizerPtr make_pact(const QuantSpec&, Role);
QuantizerPtr make_sat(const QuantSpec&, Role);
QuantizerPtr make_residual(const QuantSpec&, Role);
QuantizerPtr make_vecq(const QuantSpec&, Role);
QuantizerPtr make_mul2q(const QuantSpec&, Role);
QuantizerPtr make_clipq(const QuantSpec&, Role);
QuantizerPtr make_pot(const QuantSpec&, Role);
QuantizerPtr make_esb(const QuantSpec&, Role);
QuantizerPtr make_apot(const QuantSpec&, Role);
QuantizerPtr make_afp(const QuantSpec&, Role);

}  // namespace autoqnn::quant
