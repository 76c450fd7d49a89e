#include "autoqnn/image_io.h"

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "autoqnn/output_files.h"
#include "autoqnn/runtime.h"

#ifdef AUTOQNN_WITH_IMAGES
#include <jpeglib.h>
#include <png.h>
#endif

namespace autoqnn {

namespace {

const char* kNoImages = "this build has no image decoding (libpng/libjpeg); install libpng-dev and libjpeg-dev "
                        "(scripts/install-deps.sh) and rebuild";

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("image '" + path + "': cannot open the file");
  const std::streamsize n = f.tellg();
  if (n < 0) throw std::runtime_error("image '" + path + "': cannot read the file size");
  std::vector<uint8_t> b(static_cast<size_t>(n));
  f.seekg(0);
  if (n > 0 && !f.read(reinterpret_cast<char*>(b.data()), n))
    throw std::runtime_error("image '" + path + "': read error");
  return b;
}

void check_image(const Image& img, const std::string& path) {
  if (img.height <= 0 || img.width <= 0 || (img.channels != 1 && img.channels != 3) ||
      img.pixels.size() != static_cast<size_t>(img.height * img.width * img.channels))
    throw std::invalid_argument("write image '" + path + "': needs H, W > 0, C = 1 or 3 and H*W*C pixels");
}

#ifdef AUTOQNN_WITH_IMAGES

enum class Format { Png, Jpeg };

Format format_of(const std::vector<uint8_t>& b, const std::string& path) {
  if (b.size() >= 8 && png_sig_cmp(b.data(), 0, 8) == 0) return Format::Png;
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return Format::Jpeg;
  throw std::runtime_error("image '" + path + "' is not a PNG or JPEG file (" +
                           (b.empty() ? std::string("empty") : "unknown magic bytes") + ")");
}

// ---- PNG: libpng's simplified API (no longjmp; errors come back in image.message)
struct PngReader {
  png_image img;
  explicit PngReader(const std::vector<uint8_t>& b, const std::string& path) {
    std::memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, b.data(), b.size()))
      throw std::runtime_error("image '" + path + "': corrupt PNG (" + img.message + ")");
  }
  ~PngReader() { png_image_free(&img); }
  int64_t channels() const { return (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1; }
};

// ---- JPEG: libjpeg reports errors through a callback; we longjmp back and throw from C++. Warnings
// (e.g. "premature end of data segment" of a truncated file, which libjpeg would fill with gray) are errors.
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};
void jpeg_fail(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  c->err->format_message(c, e->message);
  std::longjmp(e->jump, 1);
}
void jpeg_message(j_common_ptr c, int level) {
  if (level < 0) jpeg_fail(c);  // a warning: corrupt or truncated data
}

// Decodes (or only reads the header of) a JPEG held in memory. Plain C data only between setjmp and the
// longjmp (no C++ object is constructed there).
bool jpeg_decode(const std::vector<uint8_t>& b, bool header_only, ImageHeader& h, uint8_t* out, size_t out_size,
                 char* message) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  if (setjmp(err.jump)) {
    std::strncpy(message, err.message, JMSG_LENGTH_MAX);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, b.data(), static_cast<unsigned long>(b.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.num_components != 1 && cinfo.num_components != 3) {
    std::snprintf(message, JMSG_LENGTH_MAX, "%d colour components (CMYK?); only gray and RGB JPEGs are supported",
                  cinfo.num_components);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  h.height = cinfo.image_height;
  h.width = cinfo.image_width;
  h.channels = cinfo.num_components;
  if (!header_only) {
    cinfo.out_color_space = h.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const size_t stride = static_cast<size_t>(cinfo.output_width) * cinfo.output_components;
    if (stride * cinfo.output_height != out_size) {
      std::snprintf(message, JMSG_LENGTH_MAX, "decoded size differs from the header");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = out + stride * cinfo.output_scanline;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  return true;
}

ImageHeader jpeg_header(const std::vector<uint8_t>& b, const std::string& path) {
  ImageHeader h;
  char msg[JMSG_LENGTH_MAX] = {0};
  if (!jpeg_decode(b, true, h, nullptr, 0, msg))
    throw std::runtime_error("image '" + path + "': corrupt JPEG (" + msg + ")");
  return h;
}

#endif  // AUTOQNN_WITH_IMAGES

}  // namespace

bool image_decoding_available() {
#ifdef AUTOQNN_WITH_IMAGES
  return true;
#else
  return false;
#endif
}

bool has_image_extension(const std::string& path) {
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos) return false;
  std::string ext = path.substr(dot + 1);
  for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == "png" || ext == "jpg" || ext == "jpeg";
}

#ifdef AUTOQNN_WITH_IMAGES

ImageHeader read_image_header(const std::string& path) {
  const auto b = file_bytes(path);
  if (format_of(b, path) == Format::Jpeg) return jpeg_header(b, path);
  PngReader r(b, path);
  return {r.img.height, r.img.width, r.channels()};
}

Image read_image(const std::string& path) {
  const auto b = file_bytes(path);
  Image out;
  if (format_of(b, path) == Format::Jpeg) {
    ImageHeader h = jpeg_header(b, path);
    out = {h.height, h.width, h.channels, {}};
    out.pixels.assign(static_cast<size_t>(h.height * h.width * h.channels), 0);
    char msg[JMSG_LENGTH_MAX] = {0};
    if (!jpeg_decode(b, false, h, out.pixels.data(), out.pixels.size(), msg))
      throw std::runtime_error("image '" + path + "': corrupt or truncated JPEG (" + msg + ")");
    return out;
  }
  PngReader r(b, path);
  out = {r.img.height, r.img.width, r.channels(), {}};
  r.img.format = out.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;  // alpha composited onto black
  out.pixels.assign(PNG_IMAGE_SIZE(r.img), 0);
  if (!png_image_finish_read(&r.img, nullptr, out.pixels.data(), 0, nullptr))
    throw std::runtime_error("image '" + path + "': corrupt or truncated PNG (" + r.img.message + ")");
  return out;
}

void write_png(const std::string& path, const Image& img) {
  check_image(img, path);
  png_image p;
  std::memset(&p, 0, sizeof(p));
  p.version = PNG_IMAGE_VERSION;
  p.width = static_cast<png_uint_32>(img.width);
  p.height = static_cast<png_uint_32>(img.height);
  p.format = img.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&p, nullptr, &size, 0, img.pixels.data(), 0, nullptr))
    throw std::runtime_error("write PNG '" + path + "': " + p.message);
  std::vector<uint8_t> buf(size);
  if (!png_image_write_to_memory(&p, buf.data(), &size, 0, img.pixels.data(), 0, nullptr))
    throw std::runtime_error("write PNG '" + path + "': " + p.message);
  atomic_write(path, [&](const std::string& tmp) { write_file_bytes(tmp, buf.data(), size); });
}

void write_jpeg(const std::string& path, const Image& img, int quality) {
  check_image(img, path);
  if (quality < 1 || quality > 100) throw std::invalid_argument("write JPEG '" + path + "': quality must be 1..100");
  jpeg_compress_struct cinfo;
  JpegError err;
  unsigned char* mem = nullptr;
  unsigned long mem_size = 0;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(mem);
    throw std::runtime_error("write JPEG '" + path + "': " + err.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &mem, &mem_size);
  cinfo.image_width = static_cast<JDIMENSION>(img.width);
  cinfo.image_height = static_cast<JDIMENSION>(img.height);
  cinfo.input_components = static_cast<int>(img.channels);
  cinfo.in_color_space = img.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = static_cast<size_t>(img.width * img.channels);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.pixels.data()) + stride * cinfo.next_scanline;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> buf(mem, mem + mem_size);
  std::free(mem);
  atomic_write(path, [&](const std::string& tmp) { write_file_bytes(tmp, buf.data(), buf.size()); });
}

#else  // no libpng / libjpeg in this build

ImageHeader read_image_header(const std::string&) { throw std::runtime_error(kNoImages); }
Image read_image(const std::string&) { throw std::runtime_error(kNoImages); }
void write_png(const std::string& path, const Image& img) { check_image(img, path); throw std::runtime_error(kNoImages); }
void write_jpeg(const std::string& path, const Image& img, int) { check_image(img, path); throw std::runtime_error(kNoImages); }

#endif

const char* no_image_decoding_message() { return kNoImages; }

}  // namespace autoqnn
