#pragma once
// The kernels behind imgnorm::Normalizer (src/ only): 256-entry tables, the fused table kernel,
// the plain per-pixel reference and the channel-mixing path. Tests and benchmarks compare them.

#include <cstdint>

#include "imgnorm/transform.hpp"

namespace imgnorm {

/// Per-channel lookup tables: entry x of channel c is the map of channel c at x, rounded once from
/// double to float32 (f32) and to float16 bits (f16).
struct Table {
  int channels = 0;
  float f32[3][256];
  std::uint16_t f16[3][256];
};
/// Builds the tables of an Affine.
Table make_table(const Affine& affine);

/// Fast fused kernel: table lookup, channel reorder (swap_rb swaps channels 0 and 2 of a 3-channel
/// image), layout and dtype, written to `out` (width·height·channels elements, densely packed).
void apply(const ImageView& src, const Table& table, bool swap_rb, Layout layout, DType dtype,
           void* out);

namespace detail {
/// The channel-mixing map, per pixel in double, rounded once (the only path for a PixelMap with a
/// matrix).
void apply_linear(const ImageView& src, const PixelMap& map, bool swap_rb, Layout layout,
                  DType dtype, void* out);
/// The plain reference: per pixel, the ChannelMap formula in double (m from mean_image / d when
/// given), rounded once to the output type, written in the output layout.
void apply_reference(const ImageView& src, const Affine& affine, bool swap_rb, Layout layout,
                     DType dtype, void* out, const double* mean_image = nullptr);
/// Per-pixel fast path of mean_image mode; `mean_scaled` is mean_image / d. Same bits as the
/// reference.
void apply_mean_image(const ImageView& src, const Affine& affine, const double* mean_scaled,
                      bool swap_rb, Layout layout, DType dtype, void* out);
}  // namespace detail

}  // namespace imgnorm
