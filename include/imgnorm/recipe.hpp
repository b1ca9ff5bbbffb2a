#pragma once
/// \file recipe.hpp
/// The preprocessing recipe: everything that decides which u8 pixels statistics and transforms see.
/// stats.json records it so that `normalize` applies the same steps to training and test data.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include "imgnorm/export.hpp"

namespace imgnorm {

/// Channel order of decoded pixels. gray has one channel (ITU-R 601 luma, as cv2.IMREAD_GRAYSCALE).
enum class ChannelOrder { rgb, bgr, gray };

/// How an image is brought to the target size.
enum class ResizeMode {
  stretch,  ///< resize to exactly W×H, aspect ratio not kept (the tutorial's cv2.resize)
  crop,     ///< scale so the image covers W×H (shorter side to size), then center crop
  pad,      ///< scale so the image fits in W×H, then center it on a pad_value background
  none,     ///< keep the decoded size (every image must have the same size: Recipe::size)
};

/// Interpolation, with the meaning of the same-named cv2.INTER_* flag.
enum class Interp { linear, area, nearest, cubic, lanczos };

/// Target size in pixels.
struct Size {
  int width = 0;
  int height = 0;
  bool operator==(const Size&) const = default;
};

/// Names of the channels in this order, as stats.json and the tables write them: {"R", "G", "B"},
/// {"B", "G", "R"} or {"Y"}.
IMGNORM_API std::vector<std::string> channel_names(ChannelOrder order);

/// Number of channels of an order: 3, or 1 for gray.
inline int channel_count(ChannelOrder order) { return order == ChannelOrder::gray ? 1 : 3; }

IMGNORM_API const char* to_string(ChannelOrder v) noexcept;
IMGNORM_API const char* to_string(ResizeMode v) noexcept;
IMGNORM_API const char* to_string(Interp v) noexcept;
/// Parsers for the names above (the CLI's and stats.json's spelling); throw
/// Error(invalid_argument).
IMGNORM_API ChannelOrder parse_channel_order(const std::string& s);
IMGNORM_API ResizeMode parse_resize_mode(const std::string& s);
IMGNORM_API Interp parse_interp(const std::string& s);
/// Parses "224" (square) or "320x240" (width x height). Throws Error(invalid_argument).
IMGNORM_API Size parse_size(const std::string& s);

/// What decoding does with transparency (PNG alpha channels and tRNS, WebP alpha; JPEG has none).
/// The default drops it, as cv2.imread does: a transparent pixel keeps the colour stored under it
/// (often black). Otherwise each pixel is composited onto an opaque background in the file's full
/// precision, before 16-bit samples are reduced to 8 bits:
///
///     out = (c·a + bg·(maxval − a)) / maxval, rounded to nearest (maxval 255 or 65535; the 8-bit
///     background is scaled by 257 for 16-bit files)
///
/// Gray output is then taken from the composited colour as from an opaque colour file.
struct Alpha {
  /// false: drop the alpha (cv2.imread); true: composite onto `background`.
  bool composite = false;
  /// Background R, G, B, 0–255 (in this order whatever the channel order). Ignored when dropping.
  std::array<std::uint8_t, 3> background{0, 0, 0};
  bool operator==(const Alpha& o) const {
    return composite == o.composite && (!composite || background == o.background);
  }
  bool operator!=(const Alpha& o) const { return !(*this == o); }
};

/// Parses "drop", "white", "black" or "R,G,B" (three integers 0–255). Throws
/// Error(invalid_argument) naming the text.
IMGNORM_API Alpha parse_alpha(const std::string& s);
/// The canonical name: "drop", "white", "black" or "R,G,B" ("255,255,255" reads back as "white").
IMGNORM_API std::string to_string(const Alpha& a);

/// Default pixel limit: the same as Pillow's decompression-bomb threshold (178,956,970 pixels).
inline constexpr std::uint64_t kDefaultMaxPixels = 178956970;

/// Everything between a file's bytes and the u8 S×S×C array that statistics or transforms read.
struct Recipe {
  ChannelOrder channels = ChannelOrder::rgb;
  /// With ResizeMode::none, 0x0 means "the images' own size": the jobs fix it to the size of the
  /// first image (with_image_size) before the run, and every image must have it.
  Size size{224, 224};
  ResizeMode resize = ResizeMode::stretch;
  Interp interp = Interp::linear;
  std::uint8_t pad_value = 0;
  /// Full-size JPEG decode with libjpeg's defaults, as cv2.imread. When false, JPEGs may be decoded
  /// at 1/2, 1/4 or 1/8 scale in the DCT domain when the result still covers the target size.
  bool exact_decode = false;
  /// Images whose header declares more pixels than this are refused before any allocation.
  std::uint64_t max_pixels = kDefaultMaxPixels;
  /// Transparency: dropped (cv2.imread, the default) or composited onto a background.
  Alpha alpha;
  bool operator==(const Recipe&) const = default;
};

/// The recipe fields a user gave explicitly; the others come from a base recipe (the training
/// statistics', or the default).
struct IMGNORM_API RecipeOverrides {
  std::optional<ChannelOrder> channels;
  std::optional<Size> size;
  std::optional<ResizeMode> resize;
  std::optional<Interp> interp;
  std::optional<std::uint8_t> pad_value;
  std::optional<bool> exact_decode;
  std::optional<std::uint64_t> max_pixels;
  std::optional<Alpha> alpha;
  /// `base` with the given fields replaced. `resize` none without `size` gives size 0x0 (the
  /// images' own), unless `base` is already none (its recorded size stays).
  Recipe apply(Recipe base) const;
};

/// The fields in which `recipe` differs from `base`, for a warning ("size 64x64 vs 224x224,
/// interp area vs linear"; base's value first); empty when equal apart from the channel order.
IMGNORM_API std::string recipe_differences(const Recipe& recipe, const Recipe& base);

}  // namespace imgnorm
