#pragma once
/// \file decode.hpp
/// Decoding of JPEG (libjpeg-turbo), PNG (libspng) and WebP (libwebp) to u8 RGB, BGR or gray.
/// Every input is hostile: sizes are checked from the header before allocating, the work of a
/// progressive JPEG is bounded by a scan limit, and a failed allocation is
/// Error(out_of_memory), never a property of the file.
/// The format is sniffed from the magic bytes, never from the file name. The result matches
/// cv2.imread(path, cv2.IMREAD_COLOR) (reordered as asked): gray replicated, alpha dropped (unless
/// DecodeOptions::alpha composites it), CMYK/YCCK converted as OpenCV does, 16-bit samples reduced
/// with >> 8, EXIF orientation applied.
///
///     imgnorm::Decoder dec;
///     imgnorm::Image img;
///     dec.decode(bytes.data(), bytes.size(), {}, img);   // RGB, full size

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/recipe.hpp"

namespace imgnorm {

enum class Format { unknown, jpeg, png, webp };

/// Default of DecodeOptions::max_scans.
inline constexpr int kDefaultMaxScans = 500;
IMGNORM_API const char* to_string(Format f) noexcept;

/// Format from the first bytes of a file (at least 12 bytes are needed for WebP).
IMGNORM_API Format sniff_format(const std::uint8_t* data, std::size_t size) noexcept;

struct DecodeOptions {
  ChannelOrder channels = ChannelOrder::rgb;
  /// Refuse images whose header declares more than this many pixels (width × height), before
  /// allocating anything. Error code too_large.
  std::uint64_t max_pixels = kDefaultMaxPixels;
  /// Apply the EXIF orientation tag (JPEG APP1), as cv2.imread does.
  bool apply_orientation = true;
  /// A JPEG whose data ends early is an Error(corrupt) unless this is true (then the part after
  /// the end is libjpeg's grey fill, as cv2.imread gives). Only truncation is forgiven: a bad
  /// Huffman code, a bogus progression or other corrupt data is refused either way.
  bool allow_truncated = false;
  /// A JPEG with more scans than this is refused (Error too_large) as soon as scan `max_scans + 1`
  /// starts: a progressive file's work grows with its scans, and a few bytes make a scan, so a
  /// small file of thousands of scans would take minutes. 500 is libjpeg-turbo's own suggestion
  /// (djpeg -maxscans, its fuzzers); real encoders write about 10. 0 means no limit.
  int max_scans = kDefaultMaxScans;
  /// When set, JPEGs may be decoded at 1/2, 1/4 or 1/8 scale (DCT domain, only these factors).
  /// Called with the full decoded size *after* orientation; returns the smallest size (after
  /// orientation) the downstream resize needs. The decoder picks the smallest factor whose result
  /// is at least that size on both axes.
  std::function<Size(Size full)> min_size;
  /// Transparency of PNG (alpha channel, tRNS) and WebP: dropped by default as cv2.imread does, or
  /// composited onto a background at the file's bit depth (see Alpha). Opaque files are unaffected.
  Alpha alpha;
  /// When set, called once the header has been read and checked, before the pixels are
  /// allocated: `decoded` is the size of the result (after scaling and orientation), `bytes` about
  /// what this decode allocates (the result, scratch, libjpeg's coefficient buffer of a
  /// progressive JPEG). run_pipeline uses it to wait until the image fits in --max-memory.
  std::function<void(Size decoded, std::uint64_t bytes)> reserve;
};

/// What decode found out about the file.
struct DecodeInfo {
  Format format = Format::unknown;
  int width = 0;            ///< stored width (before orientation and scaling)
  int height = 0;           ///< stored height
  int source_channels = 0;  ///< components in the file (1 gray, 2 gray+alpha, 3, 4 RGBA/CMYK)
  int bit_depth = 8;
  int orientation = 1;  ///< EXIF orientation 1–8 that was found (1 when none)
  int scale_denom = 1;  ///< DCT scaling used: 1, 2, 4 or 8
};

/// A reusable decoder: keeps its libjpeg/libspng state and scratch buffers between images, so that
/// one worker decodes image after image without allocating. Not thread-safe; one per worker.
class IMGNORM_API Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  /// Decodes `size` bytes into `out` (reset to the result's shape). Throws Error with code
  /// unsupported, corrupt or too_large (the file), or out_of_memory (not the file's fault); the
  /// message does not name a file (the caller adds it).
  DecodeInfo decode(const std::uint8_t* data, std::size_t size, const DecodeOptions& options,
                    Image& out);

  /// Frees the scratch buffers kept between images (after an unusually large one).
  void release_buffers() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Convenience: reads and decodes one file. Errors name the file.
IMGNORM_API Image decode_file(const std::string& path, const DecodeOptions& options = {},
                              DecodeInfo* info = nullptr);

/// Reads a whole file into `out` (resized; its capacity is reused). Throws Error(io) naming the
/// file: missing, unreadable, a directory, a symlink loop.
IMGNORM_API void read_file(const std::string& path, std::vector<std::uint8_t>& out);

}  // namespace imgnorm
