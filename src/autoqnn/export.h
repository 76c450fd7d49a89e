// Packed export: a quantized model as a standard safetensors file (8-byte little-endian header length,
// JSON header, raw little-endian data) holding per layer the bit-packed integer codes (uint8 storage) and
// the float32 dequantisation data, plus biases / BatchNorm / activation-quantizer state in their own
// dtypes and the policy JSON in __metadata__. Layout: docs/policy.md ("Packed export").
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "autoqnn/model.h"
#include "autoqnn/policy.h"

namespace autoqnn {

// ---- bit packing: code i occupies stream bits [i*bits, (i+1)*bits), least significant bit first; stream
// bit j is bit (j % 8) of byte j / 8. Output size ceil(numel * bits / 8); unused high bits of the last
// byte are zero.
std::vector<uint8_t> pack_bits(const torch::Tensor& codes, int bits);  // codes: integer, values in [0, 2^bits)
torch::Tensor unpack_bits(const uint8_t* data, size_t nbytes, int64_t count, int bits);  // int64 [count]

// ---- safetensors
struct SafeTensor {
  std::string dtype;            // F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL
  std::vector<int64_t> shape;   // [] = scalar
  std::vector<uint8_t> data;    // little-endian
};
struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // __metadata__ (string values only)
  std::map<std::string, SafeTensor> tensors;
  int64_t header_bytes = 0;                     // 8 + JSON header (set by read / write)
  int64_t data_bytes = 0;                       // the byte buffer
};
size_t dtype_size(const std::string& dtype);    // throws for an unknown dtype
SafeTensor to_safetensor(const torch::Tensor& t);  // float32 -> F32, int64 -> I64, uint8 -> U8, ...
torch::Tensor from_safetensor(const SafeTensor& t);
// Atomic. Tensors are laid out by alignment (8-byte dtypes first) then name, so every tensor starts at an
// offset that is a multiple of its element size; the header is padded with spaces to a multiple of 8.
void write_safetensors(const std::string& path, SafetensorsFile& f);
// Reads and validates (header length, JSON, dtypes, shapes vs byte ranges, no holes / overlaps).
SafetensorsFile read_safetensors(const std::string& path);

// ---- export / verify
struct ExportLayer {
  std::string name, spec;
  int code_bits = 32;
  int64_t code_bytes = 0, aux_bytes = 0;  // aux: scale + offset + table (fp32 layers: weight bytes in code_bytes)
  int64_t policy_bytes = 0;               // the policy's weight_bytes for the layer
};
struct ExportReport {
  std::vector<ExportLayer> layers;
  int64_t weight_bytes = 0;         // codes + dequantisation data (+ float weights of fp32 layers)
  int64_t policy_weight_bytes = 0;  // the policy's totals.weight_bytes (must equal weight_bytes)
  int64_t other_bytes = 0;          // biases, BN, activation-quantizer state
  int64_t header_bytes = 0, file_bytes = 0;
  int64_t tensors = 0;
};
// Encodes every quantizable layer of `model` (quantizers installed per `policy`, see apply_policy) and
// writes `path` atomically. Throws (naming the layer) when a layer's quantizer does not match the policy,
// a code is out of range, or the bytes written differ from the policy's weight_bytes.
ExportReport export_model(Model& model, const Policy& policy, const std::string& path);

struct VerifyReport {
  bool ok = true;
  int64_t layers_checked = 0, tensors_checked = 0, weights_checked = 0;
  int64_t signed_zero_diffs = 0;       // +0 vs -0 only (equal values); reported, not failures
  std::vector<std::string> problems;   // each names the tensor / layer
};
// Reloads `path` and checks, for every layer, that unpacked codes dequantise (Encoded::dequantize) to the
// model's eval-mode fake-quantized weight bit for bit, that every other tensor equals the model's, and
// that the recorded policy and byte counts match `policy`.
VerifyReport verify_export(Model& model, const Policy& policy, const std::string& path);

}  // namespace autoqnn
