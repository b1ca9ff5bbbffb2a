#include "imgnorm/decode.hpp"
#include "exif.hpp"
#include "file_bytes.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
// After jpeglib.h: the message codes (JWRN_*).
#include <jerror.h>
#include <spng.h>
#include <webp/decode.h>

#include "imgnorm/error.hpp"

namespace imgnorm {

const char* to_string(Format f) noexcept {
  switch (f) {
    case Format::unknown:
      return "unknown";
    case Format::jpeg:
      return "jpeg";
    case Format::png:
      return "png";
    case Format::webp:
      return "webp";
  }
  return "unknown";
}

Format sniff_format(const std::uint8_t* data, std::size_t size) noexcept {
  if (data == nullptr) return Format::unknown;
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return Format::jpeg;
  static const std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return Format::png;
  if (size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0) {
    return Format::webp;
  }
  return Format::unknown;
}

namespace {

// Files larger than this are refused before reading: no image within the default pixel limit
// needs more, and it keeps one hostile file from taking all memory.
constexpr std::uint64_t kMaxFileBytes = std::uint64_t{2} << 30;

// libspng chunk limits: the largest single ancillary chunk and the total of cached chunk data.
constexpr std::size_t kPngChunkSizeMax = std::size_t{64} << 20;
constexpr std::size_t kPngChunkCacheMax = std::size_t{128} << 20;

/// TIFF structure (starting with "II*\0" or "MM\0*") -> orientation from IFD0, 1 when absent or
/// malformed. Like OpenCV's ExifReader: the first 0x0112 entry wins, its value is the u16 at the
/// start of the value field whatever the declared type, and values outside 1..8 mean 1.
int parse_tiff_orientation(const std::uint8_t* p, std::size_t n) noexcept {
  if (p == nullptr || n < 8) return 1;
  bool little;
  if (p[0] == 'I' && p[1] == 'I') {
    little = true;
  } else if (p[0] == 'M' && p[1] == 'M') {
    little = false;
  } else {
    return 1;
  }
  // Callers below check that [off, off + 2) or [off, off + 4) lies inside the buffer.
  auto u16 = [&](std::size_t off) -> std::uint32_t {
    return little ? p[off] | (p[off + 1] << 8) : (p[off] << 8) | p[off + 1];
  };
  auto u32 = [&](std::size_t off) -> std::uint32_t {
    return little ? std::uint32_t{p[off]} | (std::uint32_t{p[off + 1]} << 8) |
                        (std::uint32_t{p[off + 2]} << 16) | (std::uint32_t{p[off + 3]} << 24)
                  : (std::uint32_t{p[off]} << 24) | (std::uint32_t{p[off + 1]} << 16) |
                        (std::uint32_t{p[off + 2]} << 8) | std::uint32_t{p[off + 3]};
  };
  if (u16(2) != 42) return 1;
  const std::uint64_t ifd = u32(4);
  if (ifd > n || n - ifd < 2) return 1;
  const std::uint32_t count = u16(static_cast<std::size_t>(ifd));
  std::size_t pos = static_cast<std::size_t>(ifd) + 2;
  for (std::uint32_t i = 0; i < count; ++i, pos += 12) {
    if (n - pos < 12) return 1;  // pos <= n holds: it only grows by 12 after this check passed
    if (u16(pos) == 0x0112) {
      const std::uint32_t v = u16(pos + 8);
      return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
    }
  }
  return 1;
}

/// A grow-only byte buffer: reused from image to image, never shrinks, never value-initialised.
class Scratch {
 public:
  std::uint8_t* get(std::size_t n) {
    if (n > capacity_) {
      data_.reset(new std::uint8_t[n]);
      capacity_ = n;
    }
    return data_.get();
  }
  void release() noexcept {
    data_.reset();
    capacity_ = 0;
  }

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t capacity_ = 0;
};

/// Size after orientation: axes swap for 5..8.
Size oriented(int w, int h, int orientation) { return orientation >= 5 ? Size{h, w} : Size{w, h}; }

/// Writes `src` (w×h, `ch` channels, tightly packed) transformed by EXIF orientation 2..8 into
/// `dst` (oriented size), with the result cv2.imread gives (flip / transpose as in OpenCV's
/// ApplyExifOrientation). Each destination row walks the source with a constant byte step.
void apply_orientation(const std::uint8_t* src, int w, int h, int ch, int orientation,
                       std::uint8_t* dst) {
  const std::ptrdiff_t stride = static_cast<std::ptrdiff_t>(w) * ch;
  const Size o = oriented(w, h, orientation);
  for (int y = 0; y < o.height; ++y) {
    const std::uint8_t* s = nullptr;
    std::ptrdiff_t step = 0;
    switch (orientation) {
      case 2:
        s = src + y * stride + (w - 1) * ch;
        step = -ch;
        break;
      case 3:
        s = src + (h - 1 - y) * stride + (w - 1) * ch;
        step = -ch;
        break;
      case 4:
        s = src + (h - 1 - y) * stride;
        step = ch;
        break;
      case 5:
        s = src + y * ch;
        step = stride;
        break;
      case 6:
        s = src + (h - 1) * stride + y * ch;
        step = -stride;
        break;
      case 7:
        s = src + (h - 1) * stride + (w - 1 - y) * ch;
        step = -stride;
        break;
      case 8:
        s = src + (w - 1 - y) * ch;
        step = stride;
        break;
      default:
        assert(false);
        return;
    }
    std::uint8_t* d = dst + static_cast<std::size_t>(y) * o.width * ch;
    if (ch == 1) {
      for (int x = 0; x < o.width; ++x, s += step) d[x] = *s;
    } else {
      for (int x = 0; x < o.width; ++x, s += step, d += 3) {
        d[0] = s[0];
        d[1] = s[1];
        d[2] = s[2];
      }
    }
  }
}

/// Checks the header's dimensions against the limit before anything is allocated.
void check_dimensions(const char* format, std::uint64_t w, std::uint64_t h,
                      std::uint64_t max_pixels) {
  if (w == 0 || h == 0) {
    throw Error(ErrorCode::corrupt, std::string(format) + ": image has zero width or height");
  }
  // Image keeps int dimensions; JPEG and WebP are far below this, PNG can claim 2^31 - 1.
  if (w > 0x7FFFFFFF || h > 0x7FFFFFFF || w * h > max_pixels) {
    throw Error(ErrorCode::too_large, std::string(format) + ": " + std::to_string(w) + "x" +
                                          std::to_string(h) + " pixels exceeds the limit of " +
                                          std::to_string(max_pixels));
  }
}

/// Gray from 8-bit B, G, R exactly as OpenCV 4.6's cvtColor(COLOR_BGR2GRAY) for u8 (15-bit
/// fixed point, rounded), which cv2.imread uses for WebP.
inline std::uint8_t cv_gray(int r, int g, int b) {
  return static_cast<std::uint8_t>((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15);
}

// ------------------------------------------------------------------------------------------------
// JPEG (libjpeg API of libjpeg-turbo)

/// Why a libjpeg call gave up.
enum class JpegFailure { corrupt, out_of_memory, too_many_scans };

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  bool allow_truncated = false;
  bool saw_eof = false;  // libjpeg ran out of data (JWRN_JPEG_EOF) in this decode
  JpegFailure failure = JpegFailure::corrupt;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) err->failure = JpegFailure::out_of_memory;
  std::longjmp(err->jump, 1);
}

// Warnings that leave the pixels intact (metadata oddities, junk after the last scan).
bool jpeg_warning_is_benign(const jpeg_error_mgr& e) {
  switch (e.msg_code) {
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC:
      return true;
    case JWRN_EXTRANEOUS_DATA:
      return e.msg_parm.i[1] == 0xD9;  // bytes before EOI: the image is complete
    default:
      return false;
  }
}

// With allow_truncated, only what running out of data causes: libjpeg's "premature end of JPEG
// file", then the entropy decoder hitting the EOI marker libjpeg inserts there. A bad Huffman
// code, a bogus progression or a marker in the middle of the data is corruption, truncated or not.
bool jpeg_warning_is_truncation(JpegErrorManager& e) {
  if (e.pub.msg_code == JWRN_JPEG_EOF) {
    e.saw_eof = true;
    return true;
  }
  return e.saw_eof && e.pub.msg_code == JWRN_HIT_MARKER;
}

void jpeg_on_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;  // trace messages
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  err->pub.num_warnings++;
  if (jpeg_warning_is_benign(err->pub)) return;
  if (err->allow_truncated && jpeg_warning_is_truncation(*err)) return;
  // Premature end of data, bad Huffman code, ...: libjpeg would go on with grey fill, as
  // cv2.imread does, but the pixels are not the image's.
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// The work of a progressive JPEG grows with its scans, and a scan can take a few bytes: a small
// file of thousands of scans takes minutes. libjpeg-turbo's advice (djpeg -maxscans, its fuzzers,
// TurboJPEG's scan limit) is a progress monitor that stops past a limit.
struct JpegProgress {
  jpeg_progress_mgr pub{};
  int max_scans = 0;
};

void jpeg_on_progress(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  auto* progress = reinterpret_cast<JpegProgress*>(cinfo->progress);
  const int scans = reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number;
  if (progress->max_scans > 0 && scans > progress->max_scans) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof err->message,
                  "more than %d scans (the limit: a progressive JPEG's work grows with its scans)",
                  progress->max_scans);
    err->failure = JpegFailure::too_many_scans;
    std::longjmp(err->jump, 1);
  }
}

void jpeg_silent_output(j_common_ptr) {}

/// CMYK as libjpeg returns it (Adobe files: inverted) to the requested order, as OpenCV's
/// icvCvt_CMYK2BGR_8u_C4C3R / icvCvt_CMYK2Gray_8u_C4C1R do it.
void cmyk_row(const std::uint8_t* s, int w, ChannelOrder order, std::uint8_t* d) {
  for (int x = 0; x < w; ++x, s += 4) {
    const int k = s[3];
    const int r = k - (((255 - s[0]) * k) >> 8);
    const int g = k - (((255 - s[1]) * k) >> 8);
    const int b = k - (((255 - s[2]) * k) >> 8);
    switch (order) {
      case ChannelOrder::rgb:
        d[0] = static_cast<std::uint8_t>(r);
        d[1] = static_cast<std::uint8_t>(g);
        d[2] = static_cast<std::uint8_t>(b);
        d += 3;
        break;
      case ChannelOrder::bgr:
        d[0] = static_cast<std::uint8_t>(b);
        d[1] = static_cast<std::uint8_t>(g);
        d[2] = static_cast<std::uint8_t>(r);
        d += 3;
        break;
      case ChannelOrder::gray:
        // 14-bit coefficients here (utils.cpp), unlike cvtColor's 15-bit ones.
        *d++ = static_cast<std::uint8_t>((b * 1868 + g * 9617 + r * 4899 + (1 << 13)) >> 14);
        break;
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------

struct Decoder::Impl {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager jerr{};
  JpegProgress progress{};
  bool jpeg_ok = false;
  Scratch pixels;  // decoded pixels before orientation or format conversion
  Scratch row;     // one CMYK row

  Impl() {
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_on_error;
    jerr.pub.emit_message = jpeg_on_message;
    jerr.pub.output_message = jpeg_silent_output;
    jpeg_ok = create_jpeg();
    if (!jpeg_ok) throw std::bad_alloc();
    // After jpeg_create_decompress, which clears everything but the error manager.
    progress.pub.progress_monitor = jpeg_on_progress;
    cinfo.progress = &progress.pub;
  }
  ~Impl() {
    if (jpeg_ok) jpeg_destroy_decompress(&cinfo);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // The functions with setjmp hold no object with a destructor, so longjmp skips nothing.
  bool create_jpeg() {
    if (setjmp(jerr.jump)) return false;
    jpeg_create_decompress(&cinfo);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    return true;
  }

  bool jpeg_header(const std::uint8_t* data, std::size_t size) {
    if (setjmp(jerr.jump)) return false;
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    return true;
  }

  /// Decodes into `dst` (tightly packed, out_w × out_h × channels of `order`).
  bool jpeg_pixels(J_COLOR_SPACE space, unsigned denom, ChannelOrder order, bool cmyk,
                   std::uint8_t* dst, unsigned out_w, unsigned out_h, std::uint8_t* cmyk_buf) {
    if (setjmp(jerr.jump)) return false;
    cinfo.out_color_space = space;
    cinfo.scale_num = 1;
    cinfo.scale_denom = denom;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != out_w || cinfo.output_height != out_h) {
      std::snprintf(jerr.message, sizeof jerr.message, "unexpected output size %ux%u",
                    cinfo.output_width, cinfo.output_height);
      return false;
    }
    const std::size_t stride =
        static_cast<std::size_t>(out_w) * static_cast<unsigned>(cinfo.output_components);
    const std::size_t dst_stride = static_cast<std::size_t>(out_w) * channel_count(order);
    while (cinfo.output_scanline < cinfo.output_height) {
      const unsigned y = cinfo.output_scanline;
      JDIMENSION got;
      if (cmyk) {
        JSAMPROW r = cmyk_buf;
        got = jpeg_read_scanlines(&cinfo, &r, 1);
        if (got == 1) cmyk_row(cmyk_buf, static_cast<int>(out_w), order, dst + y * dst_stride);
      } else {
        JSAMPROW rows[16];
        const unsigned n = std::min(16u, out_h - y);
        for (unsigned i = 0; i < n; ++i) rows[i] = dst + (y + i) * stride;
        got = jpeg_read_scanlines(&cinfo, rows, n);
      }
      if (got == 0) {  // only a suspending source returns nothing; jpeg_mem_src never does
        std::snprintf(jerr.message, sizeof jerr.message, "decoder made no progress");
        return false;
      }
    }
    jpeg_finish_decompress(&cinfo);
    return true;
  }

  [[noreturn]] void jpeg_fail() const {
    const std::string what = std::string("JPEG: ") + jerr.message;
    switch (jerr.failure) {
      case JpegFailure::out_of_memory:
        throw Error(ErrorCode::out_of_memory, what);
      case JpegFailure::too_many_scans:
        throw Error(ErrorCode::too_large, what);
      case JpegFailure::corrupt:
        break;
    }
    throw Error(ErrorCode::corrupt, what);
  }

  DecodeInfo decode_jpeg(const std::uint8_t* data, std::size_t size, const DecodeOptions& options,
                         Image& out);
  DecodeInfo decode_png(const std::uint8_t* data, std::size_t size, const DecodeOptions& options,
                        Image& out);
  DecodeInfo decode_webp(const std::uint8_t* data, std::size_t size, const DecodeOptions& options,
                         Image& out);
};

namespace {

/// Leaves the libjpeg decompressor ready for the next image, whatever happened.
struct JpegAbortGuard {
  j_decompress_ptr cinfo;
  ~JpegAbortGuard() { jpeg_abort_decompress(cinfo); }
};

}  // namespace

DecodeInfo Decoder::Impl::decode_jpeg(const std::uint8_t* data, std::size_t size,
                                      const DecodeOptions& options, Image& out) {
  JpegAbortGuard guard{&cinfo};
  jerr.allow_truncated = options.allow_truncated;
  jerr.saw_eof = false;
  jerr.failure = JpegFailure::corrupt;
  progress.max_scans = options.max_scans;
  if (!jpeg_header(data, size)) jpeg_fail();
  DecodeInfo info;
  info.format = Format::jpeg;
  info.width = static_cast<int>(cinfo.image_width);
  info.height = static_cast<int>(cinfo.image_height);
  info.source_channels = cinfo.num_components;
  info.bit_depth = cinfo.data_precision;
  check_dimensions("JPEG", cinfo.image_width, cinfo.image_height, options.max_pixels);

  // cv2.imread reads the first APP1 marker only (normally the EXIF one: the standard puts it
  // right after SOI).
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1) {
      info.orientation = detail::parse_exif_orientation(m->data, m->data_length);
      break;
    }
  }
  const int orientation = options.apply_orientation ? info.orientation : 1;

  // DCT-domain prescale: the largest denominator whose output still covers what the caller
  // needs. libjpeg-turbo's output size for 1/d is ceil(size / d).
  const unsigned w = cinfo.image_width;
  const unsigned h = cinfo.image_height;
  unsigned denom = 1;
  if (options.min_size) {
    const Size need =
        options.min_size(oriented(static_cast<int>(w), static_cast<int>(h), orientation));
    for (unsigned d : {8u, 4u, 2u}) {
      const Size got = oriented(static_cast<int>((w + d - 1) / d),
                                static_cast<int>((h + d - 1) / d), orientation);
      if (got.width >= need.width && got.height >= need.height) {
        denom = d;
        break;
      }
    }
  }
  info.scale_denom = static_cast<int>(denom);
  const unsigned out_w = (w + denom - 1) / denom;
  const unsigned out_h = (h + denom - 1) / denom;

  // As OpenCV: four components are read as CMYK (libjpeg turns YCCK into CMYK) and converted
  // here; anything else is converted by libjpeg (gray from a colour file is its Y channel).
  const bool cmyk = cinfo.num_components == 4;
  J_COLOR_SPACE space = JCS_CMYK;
  if (!cmyk) {
    switch (options.channels) {
      case ChannelOrder::rgb:
        space = JCS_EXT_RGB;
        break;
      case ChannelOrder::bgr:
        space = JCS_EXT_BGR;
        break;
      case ChannelOrder::gray:
        space = JCS_GRAYSCALE;
        break;
    }
  }
  const int ch = channel_count(options.channels);
  const Size final_size = oriented(static_cast<int>(out_w), static_cast<int>(out_h), orientation);
  const std::size_t bytes = static_cast<std::size_t>(out_w) * out_h * ch;
  if (options.reserve) {
    std::uint64_t need = bytes * (orientation == 1 ? 1 : 2) + (cmyk ? std::uint64_t{out_w} * 4 : 0);
    // Progressive and multi-scan files keep every DCT coefficient (2 bytes) until the last scan.
    if (cinfo.progressive_mode || cinfo.comps_in_scan < cinfo.num_components) {
      for (int c = 0; c < cinfo.num_components; ++c) {
        const jpeg_component_info& comp = cinfo.comp_info[c];
        need += std::uint64_t{comp.width_in_blocks} * comp.height_in_blocks * DCTSIZE2 * 2;
      }
    }
    options.reserve(final_size, need);
  }
  out.reset(final_size.width, final_size.height, ch);
  std::uint8_t* dst = orientation == 1 ? out.data() : pixels.get(bytes);
  std::uint8_t* cmyk_buf = cmyk ? row.get(static_cast<std::size_t>(out_w) * 4) : nullptr;
  if (!jpeg_pixels(space, denom, options.channels, cmyk, dst, out_w, out_h, cmyk_buf)) jpeg_fail();
  if (orientation != 1) {
    apply_orientation(dst, static_cast<int>(out_w), static_cast<int>(out_h), ch, orientation,
                      out.data());
  }
  return info;
}

// ------------------------------------------------------------------------------------------------
// PNG (libspng), matching OpenCV 4.6's libpng reader: 16-bit samples chopped to the high byte
// (png_set_strip_16), alpha and tRNS dropped (unless DecodeOptions::alpha composites them),
// palettes expanded, 1/2/4-bit gray scaled to 0..255, gray from colour with
// png_set_rgb_to_gray(1, 0.299, 0.587) including its gamma handling.

namespace {

struct SpngCtx {
  spng_ctx* ctx = spng_ctx_new(0);
  ~SpngCtx() { spng_ctx_free(ctx); }
};

[[noreturn]] void png_fail(int ret) {
  throw Error(ret == SPNG_EMEM ? ErrorCode::out_of_memory : ErrorCode::corrupt,
              std::string("PNG: ") + spng_strerror(ret));
}

// libpng's rgb_to_gray coefficients for (0.299, 0.587): png_fixed, then * 32768 / 100000.
constexpr std::uint32_t kPngRed = 9797;
constexpr std::uint32_t kPngGreen = 19234;
constexpr std::uint32_t kPngBlue = 32768 - kPngRed - kPngGreen;

/// libpng's png_gamma_significant: gamma (×100000) more than 5% away from 1.
bool png_gamma_significant(std::uint32_t g) { return g < 95000 || g > 105000; }

/// libpng's png_reciprocal for ×100000 fixed point.
std::uint32_t png_reciprocal(std::uint32_t a) {
  return static_cast<std::uint32_t>(std::floor(1e10 / a + .5));
}

/// libpng's png_build_8bit_table (floating-point build of png_gamma_8bit_correct).
void png_gamma_table(std::uint32_t gamma, std::uint8_t table[256]) {
  for (int i = 0; i < 256; ++i) {
    if (png_gamma_significant(gamma) && i > 0 && i < 255) {
      table[i] =
          static_cast<std::uint8_t>(std::floor(255 * std::pow(i / 255., gamma * .00001) + .5));
    } else {
      table[i] = static_cast<std::uint8_t>(i);
    }
  }
}

/// The file gamma libpng would use (×100000), 0 when it has none: sRGB implies 45455, else a
/// gAMA within libpng's accepted range.
std::uint32_t png_file_gamma(spng_ctx* ctx) {
  std::uint8_t intent = 0;
  if (spng_get_srgb(ctx, &intent) == 0) return 45455;
  std::uint32_t g = 0;
  if (spng_get_gama_int(ctx, &g) == 0 && g >= 16 && g <= 625000000) return g;
  return 0;
}

/// Composites `n` pixels of straight (not premultiplied) RGBA with `maxval` 255 or 65535 onto
/// `bg` (same scale): c' = (c·a + bg·(maxval − a)) / maxval rounded to nearest. maxval is odd, so
/// the quotient is never exactly half-way. The sum is at most maxval² < 2³².
template <typename T>
inline std::uint32_t composite_sample(std::uint32_t c, std::uint32_t a, std::uint32_t bg) {
  constexpr std::uint32_t kMax = static_cast<T>(~T{0});
  return (c * a + bg * (kMax - a) + kMax / 2) / kMax;
}

/// 8-bit RGBA -> packed RGB (`out` may be `rgba` itself: each pixel is read before it is written).
void composite_rgba8(const std::uint8_t* rgba, std::size_t n, const Alpha& alpha,
                     std::uint8_t* out) {
  const auto& bg = alpha.background;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2],
                        a = rgba[4 * i + 3];
    out[3 * i] = static_cast<std::uint8_t>(composite_sample<std::uint8_t>(r, a, bg[0]));
    out[3 * i + 1] = static_cast<std::uint8_t>(composite_sample<std::uint8_t>(g, a, bg[1]));
    out[3 * i + 2] = static_cast<std::uint8_t>(composite_sample<std::uint8_t>(b, a, bg[2]));
  }
}

/// 16-bit RGBA in place (alpha left as it was), background 8-bit × 257.
void composite_rgba16(std::uint16_t* p, std::size_t n, const Alpha& alpha) {
  const auto& bg = alpha.background;
  for (std::size_t i = 0; i < n; ++i, p += 4) {
    const std::uint32_t a = p[3];
    for (int c = 0; c < 3; ++c)
      p[c] = static_cast<std::uint16_t>(composite_sample<std::uint16_t>(p[c], a, bg[c] * 257u));
  }
}

}  // namespace

DecodeInfo Decoder::Impl::decode_png(const std::uint8_t* data, std::size_t size,
                                     const DecodeOptions& options, Image& out) {
  SpngCtx s;
  if (s.ctx == nullptr) throw std::bad_alloc();
  spng_ctx* ctx = s.ctx;
  // As libpng: a bad CRC in a critical chunk is an error, in an ancillary one drops the chunk.
  spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_DISCARD);
  spng_set_chunk_limits(ctx, kPngChunkSizeMax, kPngChunkCacheMax);
  if (int ret = spng_set_png_buffer(ctx, data, size)) png_fail(ret);
  spng_ihdr ihdr{};
  if (int ret = spng_get_ihdr(ctx, &ihdr)) png_fail(ret);

  DecodeInfo info;
  info.format = Format::png;
  info.width = static_cast<int>(std::min<std::uint32_t>(ihdr.width, 0x7FFFFFFF));
  info.height = static_cast<int>(std::min<std::uint32_t>(ihdr.height, 0x7FFFFFFF));
  info.bit_depth = ihdr.bit_depth;
  switch (ihdr.color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE:
      info.source_channels = 1;
      break;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA:
      info.source_channels = 2;
      break;
    case SPNG_COLOR_TYPE_TRUECOLOR:
      info.source_channels = 3;
      break;
    case SPNG_COLOR_TYPE_INDEXED:
      info.source_channels = 3;
      break;
    default:
      info.source_channels = 4;
      break;
  }
  check_dimensions("PNG", ihdr.width, ihdr.height, options.max_pixels);
  const int w = info.width;
  const int h = info.height;
  const std::size_t npix = static_cast<std::size_t>(w) * h;

  // OpenCV 4.6 applies an eXIf chunk that comes before the image data (read with the header).
  spng_exif exif{};
  int ret = spng_get_exif(ctx, &exif);
  if (ret == 0) {
    info.orientation =
        parse_tiff_orientation(reinterpret_cast<const std::uint8_t*>(exif.data), exif.length);
  } else if (ret != SPNG_ECHUNKAVAIL) {
    png_fail(ret);
  }
  const int orientation = options.apply_orientation ? info.orientation : 1;
  const int ch = channel_count(options.channels);
  const Size final_size = oriented(w, h, orientation);
  const bool sixteen = ihdr.bit_depth == 16;
  const bool gray_source = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ||
                           ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
  if (options.reserve) {
    // The result, a raw decode (up to RGBA16) where the requested format needs one, and the
    // orientation's copy.
    const bool direct = options.channels == ChannelOrder::gray
                            ? ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && !sixteen
                            : !sixteen;
    const std::uint64_t raw = direct ? 0 : npix * (sixteen ? 8 : 3);
    options.reserve(final_size, npix * ch * (orientation == 1 ? 1 : 2) + raw);
  }
  out.reset(final_size.width, final_size.height, ch);
  // Pixels in stored orientation and the requested channels go to `dst`: straight into `out`,
  // or, when an orientation follows, into scratch (after the raw decode when there is one).
  std::uint8_t* dst = out.data();
  auto decode_direct = [&](int fmt) {
    std::size_t len = 0;
    if (int r = spng_decoded_image_size(ctx, fmt, &len)) png_fail(r);
    assert(len == npix * ch);
    if (orientation != 1) dst = pixels.get(len);
    if (int r = spng_decode_image(ctx, dst, len, fmt, 0)) png_fail(r);
  };
  auto decode_raw = [&](int fmt, int flags = 0) {
    std::size_t len = 0;
    if (int r = spng_decoded_image_size(ctx, fmt, &len)) png_fail(r);
    std::uint8_t* raw = pixels.get(len + (orientation == 1 ? 0 : npix * ch));
    if (orientation != 1) dst = raw + len;
    if (int r = spng_decode_image(ctx, raw, len, fmt, flags)) png_fail(r);
    return raw;
  };

  // --alpha: a file with transparency (alpha channel or tRNS) is composited at its own depth and
  // then takes the colour paths below as if it were opaque RGB (packed RGB8, or RGBA16 whose alpha
  // is ignored from then on).
  spng_trns trns{};
  const bool composite =
      options.alpha.composite &&
      (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
       ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA || spng_get_trns(ctx, &trns) == 0);
  auto composited8 = [&] {
    std::uint8_t* raw = decode_raw(SPNG_FMT_RGBA8, SPNG_DECODE_TRNS);
    composite_rgba8(raw, npix, options.alpha, raw);
    return raw;
  };
  auto composited16 = [&] {
    std::uint8_t* raw = decode_raw(SPNG_FMT_RGBA16, SPNG_DECODE_TRNS);
    composite_rgba16(reinterpret_cast<std::uint16_t*>(raw), npix, options.alpha);
    return raw;
  };

  if (options.channels != ChannelOrder::gray && !sixteen) {
    if (composite) {
      const std::uint8_t* rgb = composited8();
      std::copy(rgb, rgb + npix * 3, dst);
    } else {
      decode_direct(SPNG_FMT_RGB8);
    }
    if (options.channels == ChannelOrder::bgr) {
      for (std::size_t i = 0; i < npix; ++i) std::swap(dst[3 * i], dst[3 * i + 2]);
    }
  } else if (options.channels != ChannelOrder::gray) {
    // RGBA16 (host order) for every 16-bit colour type; keep the high byte of each sample.
    const std::uint8_t* raw = composite ? composited16() : decode_raw(SPNG_FMT_RGBA16);
    const auto* p = reinterpret_cast<const std::uint16_t*>(raw);
    const int r_at = options.channels == ChannelOrder::bgr ? 2 : 0;
    for (std::size_t i = 0; i < npix; ++i, p += 4) {
      dst[3 * i + r_at] = static_cast<std::uint8_t>(p[0] >> 8);
      dst[3 * i + 1] = static_cast<std::uint8_t>(p[1] >> 8);
      dst[3 * i + 2 - r_at] = static_cast<std::uint8_t>(p[2] >> 8);
    }
  } else if (gray_source && !composite && !sixteen &&
             ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE) {
    decode_direct(SPNG_FMT_G8);
  } else if (gray_source && !composite) {
    // Gray + alpha (8 or 16 bit) and 16-bit gray: the file's own samples, first of each pixel.
    const std::uint8_t* raw = decode_raw(SPNG_FMT_PNG);
    const std::size_t spp = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ? 2 : 1;
    if (sixteen) {
      const auto* p = reinterpret_cast<const std::uint16_t*>(raw);
      for (std::size_t i = 0; i < npix; ++i) dst[i] = static_cast<std::uint8_t>(p[i * spp] >> 8);
    } else {
      for (std::size_t i = 0; i < npix; ++i) dst[i] = raw[i * spp];
    }
  } else {
    // Gray from colour: libpng's png_do_rgb_to_gray. Equal R, G, B pass through; otherwise 8-bit
    // data truncates, 16-bit data rounds (then >> 8). With a significant file gamma libpng
    // mixes in linear light through its 8-bit gamma tables.
    const std::uint32_t gamma = png_file_gamma(ctx);
    const bool use_gamma = gamma != 0 && png_gamma_significant(gamma);
    if (!sixteen) {
      const std::uint8_t* raw = composite ? composited8() : decode_raw(SPNG_FMT_RGB8);
      std::uint8_t to_linear[256];
      std::uint8_t from_linear[256];
      if (use_gamma) {
        const std::uint32_t screen = png_reciprocal(gamma);
        png_gamma_table(png_reciprocal(gamma), to_linear);
        png_gamma_table(png_reciprocal(screen), from_linear);
      }
      for (std::size_t i = 0; i < npix; ++i) {
        const std::uint32_t r = raw[3 * i], g = raw[3 * i + 1], b = raw[3 * i + 2];
        if (r == g && r == b) {
          dst[i] = static_cast<std::uint8_t>(r);
        } else if (use_gamma) {
          dst[i] = from_linear[(kPngRed * to_linear[r] + kPngGreen * to_linear[g] +
                                kPngBlue * to_linear[b] + 16384) >>
                               15];
        } else {
          dst[i] = static_cast<std::uint8_t>((kPngRed * r + kPngGreen * g + kPngBlue * b) >> 15);
        }
      }
    } else {
      // 16-bit with gamma goes through libpng's 16-bit gamma tables; not reproduced here (the
      // result can differ from cv2 by a few levels for such files).
      const auto* p = reinterpret_cast<const std::uint16_t*>(
          composite ? composited16() : decode_raw(SPNG_FMT_RGBA16));
      for (std::size_t i = 0; i < npix; ++i, p += 4) {
        const std::uint32_t r = p[0], g = p[1], b = p[2];
        const std::uint32_t v =
            r == g && r == b ? r : (kPngRed * r + kPngGreen * g + kPngBlue * b + 16384) >> 15;
        dst[i] = static_cast<std::uint8_t>(v >> 8);
      }
    }
  }
  // Read on to IEND, as libpng's png_read_end in cv2.imread: a file cut after the image data
  // (last IDAT CRC or IEND missing) is truncated, not complete.
  if (int r = spng_decode_chunks(ctx)) png_fail(r);
  if (orientation != 1) apply_orientation(dst, w, h, ch, orientation, out.data());
  return info;
}

// ------------------------------------------------------------------------------------------------
// WebP (libwebp). cv2 4.6 ignores EXIF in WebP files; gray is cvtColor(BGR2GRAY) of the colour
// decode.

DecodeInfo Decoder::Impl::decode_webp(const std::uint8_t* data, std::size_t size,
                                      const DecodeOptions& options, Image& out) {
  WebPBitstreamFeatures features{};
  const VP8StatusCode status = WebPGetFeatures(data, size, &features);
  if (status != VP8_STATUS_OK) {
    throw Error(ErrorCode::corrupt,
                "WebP: cannot read the header (status " + std::to_string(status) + ")");
  }
  if (features.has_animation) throw Error(ErrorCode::unsupported, "WebP: animated images");
  DecodeInfo info;
  info.format = Format::webp;
  info.width = features.width;
  info.height = features.height;
  info.source_channels = features.has_alpha ? 4 : 3;
  if (features.width < 0 || features.height < 0) {
    throw Error(ErrorCode::corrupt, "WebP: negative dimensions");
  }
  check_dimensions("WebP", static_cast<std::uint64_t>(features.width),
                   static_cast<std::uint64_t>(features.height), options.max_pixels);
  const int w = features.width;
  const int h = features.height;
  const std::size_t npix = static_cast<std::size_t>(w) * h;
  const int ch = channel_count(options.channels);
  // Lossless (format 2) decodes through an ARGB buffer of its own; gray through BGR.
  if (options.reserve)
    options.reserve({w, h}, npix * ch + (options.channels == ChannelOrder::gray ? npix * 3 : 0) +
                                (features.format == 2 ? npix * 4 : 0));
  out.reset(w, h, ch);
  std::uint8_t* got = nullptr;
  if (options.alpha.composite && features.has_alpha) {
    // --alpha: straight RGBA composited to RGB, then the order (or gray) asked for, as opaque.
    std::uint8_t* rgba = pixels.get(npix * 4);
    got = WebPDecodeRGBAInto(data, size, rgba, npix * 4, w * 4);
    if (got == nullptr) throw Error(ErrorCode::corrupt, "WebP: cannot decode the image data");
    std::uint8_t* d = out.data();
    if (options.channels == ChannelOrder::rgb) {
      composite_rgba8(rgba, npix, options.alpha, d);
    } else {
      composite_rgba8(rgba, npix, options.alpha, rgba);
      for (std::size_t i = 0; i < npix; ++i) {
        const std::uint8_t r = rgba[3 * i], g = rgba[3 * i + 1], b = rgba[3 * i + 2];
        if (options.channels == ChannelOrder::bgr) {
          d[3 * i] = b;
          d[3 * i + 1] = g;
          d[3 * i + 2] = r;
        } else {
          d[i] = cv_gray(r, g, b);
        }
      }
    }
    return info;
  }
  switch (options.channels) {
    case ChannelOrder::rgb:
      got = WebPDecodeRGBInto(data, size, out.data(), npix * 3, w * 3);
      break;
    case ChannelOrder::bgr:
      got = WebPDecodeBGRInto(data, size, out.data(), npix * 3, w * 3);
      break;
    case ChannelOrder::gray: {
      std::uint8_t* bgr = pixels.get(npix * 3);
      got = WebPDecodeBGRInto(data, size, bgr, npix * 3, w * 3);
      if (got != nullptr) {
        std::uint8_t* d = out.data();
        for (std::size_t i = 0; i < npix; ++i)
          d[i] = cv_gray(bgr[3 * i + 2], bgr[3 * i + 1], bgr[3 * i]);
      }
      break;
    }
  }
  if (got == nullptr) throw Error(ErrorCode::corrupt, "WebP: cannot decode the image data");
  return info;
}

// ------------------------------------------------------------------------------------------------

Decoder::Decoder() : impl_(std::make_unique<Impl>()) {}
Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

void Decoder::release_buffers() noexcept {
  if (!impl_) return;
  impl_->pixels.release();
  impl_->row.release();
}

DecodeInfo Decoder::decode(const std::uint8_t* data, std::size_t size, const DecodeOptions& options,
                           Image& out) {
  if (!impl_) impl_ = std::make_unique<Impl>();  // a moved-from decoder stays usable
  if (data == nullptr || size == 0) throw Error(ErrorCode::unsupported, "empty file");
  switch (sniff_format(data, size)) {
    case Format::jpeg:
      return impl_->decode_jpeg(data, size, options, out);
    case Format::png:
      return impl_->decode_png(data, size, options, out);
    case Format::webp:
      return impl_->decode_webp(data, size, options, out);
    case Format::unknown:
      break;
  }
  throw Error(ErrorCode::unsupported, "not a JPEG, PNG or WebP file");
}

// ------------------------------------------------------------------------------------------------

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void io_fail(const std::string& path, const char* what, int err) {
  std::string msg = path + ": " + what;
  if (err != 0) msg += std::string(": ") + std::strerror(err);
  throw Error(ErrorCode::io, msg);
}

// Opens and checks `path`, then reads it whole into the buffer grow(n) returns for its size n;
// returns the bytes read (fewer than n when the file shrank meanwhile).
template <typename Grow>
std::size_t read_whole_file(const std::string& path, Grow grow) {
  Fd f;
  // O_NONBLOCK: opening a FIFO must not hang (it is refused below as not a regular file).
  do {
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  } while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) {
    const int err = errno;
    switch (err) {
      case ENOENT:
        io_fail(path, "no such file", 0);
      case EACCES:
        io_fail(path, "permission denied", 0);
      case ELOOP:
        io_fail(path, "symlink loop", 0);
      case ENOTDIR:
        io_fail(path, "a parent is not a directory", 0);
      default:
        io_fail(path, "cannot open", err);
    }
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) io_fail(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) io_fail(path, "is a directory", 0);
  if (!S_ISREG(st.st_mode)) io_fail(path, "not a regular file", 0);
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > kMaxFileBytes) {
    throw Error(ErrorCode::too_large,
                path + ": file larger than " + std::to_string(kMaxFileBytes >> 30) + " GiB");
  }
  const std::size_t want = static_cast<std::size_t>(st.st_size);
  std::uint8_t* buf = grow(want);
  std::size_t done = 0;
  while (done < want) {
    const ssize_t n = ::pread(f.fd, buf + done, want - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      io_fail(path, "read error", errno);
    }
    if (n == 0) break;  // the file shrank while we read it: keep what is there
    done += static_cast<std::size_t>(n);
  }
  return done;
}

}  // namespace

void read_file(const std::string& path, std::vector<std::uint8_t>& out) {
  out.clear();
  out.resize(read_whole_file(path, [&](std::size_t n) {
    out.resize(n);
    return out.data();
  }));
}

namespace detail {

void read_file(const std::string& path, FileBytes& out) {
  out.size_ = 0;
  out.size_ = read_whole_file(path, [&](std::size_t n) {
    if (n > out.capacity_) {
      out.data_.reset();  // the old allocation is not needed while the new one is made
      out.capacity_ = 0;
      out.data_.reset(new std::uint8_t[n]);
      out.capacity_ = n;
    }
    return out.data_.get();
  });
}

}  // namespace detail

Image decode_file(const std::string& path, const DecodeOptions& options, DecodeInfo* info) {
  std::vector<std::uint8_t> bytes;
  read_file(path, bytes);
  Decoder decoder;
  Image img;
  try {
    DecodeInfo i = decoder.decode(bytes.data(), bytes.size(), options, img);
    if (info != nullptr) *info = i;
  } catch (const Error& e) {
    throw with_path(e, path);
  }
  return img;
}

namespace detail {

int parse_exif_orientation(const std::uint8_t* data, std::size_t size) noexcept {
  static const std::uint8_t kExif[6] = {'E', 'x', 'i', 'f', 0, 0};
  if (data == nullptr || size < 6 || std::memcmp(data, kExif, 6) != 0) return 1;
  return parse_tiff_orientation(data + 6, size - 6);
}

}  // namespace detail

}  // namespace imgnorm
