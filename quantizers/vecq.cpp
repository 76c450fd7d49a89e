// TODO(quantizers): implement this scheme. Placeholder so the library links while it is written.
#include <stdexcept>

#include "quantizers/schemes.h"

namespace autoqnn::quant {
QuantizerPtr make_vecq(const QuantSpec& spec, Role) {
  throw std::logic_error("scheme '" + spec.scheme + "' is not implemented yet");
}
}  // namespace autoqnn::quant
