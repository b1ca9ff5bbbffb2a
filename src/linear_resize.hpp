#pragma once
// A bilinear u8 resize that reproduces OpenCV 4.6's cv::resize(INTER_LINEAR) bit for bit, without
// OpenCV: the same fixed-point coefficients, the same integer horizontal pass, and the vertical
// pass's rounding (that of OpenCV's SIMD VResizeLinearVec_32s8u, which the installed 4.6 applies
// to every column). See docs/design.md, "A fused, bit-exact bilinear resize".

#include <cstddef>
#include <cstdint>
#include <vector>

namespace imgnorm::detail {

/// Receives each output row as soon as it is produced: (row index, pointer to width·channels u8).
/// The pointer is valid during the call only.
using RowSink = void (*)(void* ctx, int y, const std::uint8_t* row);

/// Reusable buffers of linear_resize_u8 (one per worker).
struct LinearResizeBuffers {
  std::vector<int> xofs;               // per output element: offset of the first tap
  std::vector<int> xofs1;              // ... and of the second tap
  std::vector<short> alpha;            // per output element: the two horizontal coefficients
  std::vector<int> px_ofs0, px_ofs1;   // per output pixel: offsets of the two source pixels
  std::vector<std::int32_t> px_alpha;  // per output pixel: a0 | a1 << 16
  int vec_pixels = 0;                  // leading pixels whose taps can be read 4 bytes at a time
  std::vector<int> rows;               // two horizontally resized rows (int, ×2048)
  std::vector<std::uint8_t> out;       // one output row (sink mode)
};

/// Whether linear_resize_u8 handles `channels` (1 to 4); other counts go to OpenCV.
inline bool linear_resize_supported(int channels) { return channels >= 1 && channels <= 4; }

/// Resizes src (sw × sh × channels, rows `src_stride` bytes apart) to dw × dh with exactly the
/// bytes of cv::resize(src, dst, Size(dw, dh), 0, 0, INTER_LINEAR) from OpenCV 4.6 (including its
/// same-size copy and its exact-2× INTER_AREA shortcut). Rows go to dst (rows `dst_stride` bytes
/// apart) or, when dst is null, to sink(ctx, y, row) in order y = 0..dh−1.
void linear_resize_u8(const std::uint8_t* src, std::size_t src_stride, int sw, int sh, int channels,
                      std::uint8_t* dst, std::size_t dst_stride, int dw, int dh,
                      LinearResizeBuffers& buf, RowSink sink = nullptr, void* ctx = nullptr);

}  // namespace imgnorm::detail
