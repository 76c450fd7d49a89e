// PNG / JPEG files <-> 8-bit pixels (libpng, libjpeg). Built with the decoders only when CMake found both
// libraries (AUTOQNN_WITH_IMAGES, set on image_io.cpp alone); otherwise every call throws the same
// "no image decoding" error, so `--dataset folder:` fails clearly on such a build.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace autoqnn {

// Pixels in row-major H x W x C order, C = 1 (gray) or 3 (RGB).
struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

// What the file holds without decoding its pixels: size and its own channels (gray / gray + alpha -> 1;
// RGB / RGBA / palette -> 3).
struct ImageHeader {
  int64_t height = 0, width = 0, channels = 0;
};

bool image_decoding_available();  // false: this build has no libpng / libjpeg
const char* no_image_decoding_message();  // the error such a build gives
// True for .png, .jpg, .jpeg (any case): the files a folder data set reads.
bool has_image_extension(const std::string& path);
// The format is told by the file's magic bytes (PNG 89 50 4E 47, JPEG FF D8 FF), not its extension.
// 16-bit PNGs are reduced to 8 bits and alpha is dropped. Throws std::runtime_error naming the file
// (unreadable, not a PNG / JPEG, corrupt, truncated, CMYK JPEG).
ImageHeader read_image_header(const std::string& path);
Image read_image(const std::string& path);
// Writers (tests and examples make small image folders with them); atomic (temp file + rename).
// JPEG quality 1..100.
void write_png(const std::string& path, const Image& img);
void write_jpeg(const std::string& path, const Image& img, int quality = 95);

}  // namespace autoqnn
