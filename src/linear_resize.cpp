#include "linear_resize.hpp"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>

namespace imgnorm::detail {
namespace {

constexpr int kCoefBits = 11;  // INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;

// cvFloor(float) as OpenCV 4.6 computes it.
inline int cv_floor(float v) {
  int i = static_cast<int>(v);
  return i - (i > v);
}

// saturate_cast<short>(float): round half to even (cvRound), then saturate.
inline short sat_short(float v) {
  long r = std::lrintf(v);
  return static_cast<short>(std::clamp<long>(r, SHRT_MIN, SHRT_MAX));
}

// saturate_cast<int>(double).
inline int sat_int(double v) {
  double r = std::nearbyint(v);
  if (r >= INT_MAX) return INT_MAX;
  if (r <= INT_MIN) return INT_MIN;
  return static_cast<int>(r);
}

inline std::uint8_t sat_u8(int v) { return static_cast<std::uint8_t>(std::clamp(v, 0, 255)); }

// INTER_AREA's fast path for an exact 2× downscale on both axes (cv::resize takes it for
// INTER_LINEAR too): (a + b + c + d + 2) >> 2 for 1, 3 and 4 channels; 2 channels go through the
// generic area loop, sum · 0.25f rounded half to even.
void area_2x(const std::uint8_t* src, std::size_t src_stride, int cn, std::uint8_t* dst,
             std::size_t dst_stride, int dw, int dh, std::uint8_t* row_buf, RowSink sink,
             void* ctx) {
  const int w = dw * cn;
  for (int y = 0; y < dh; ++y) {
    const std::uint8_t* s0 = src + static_cast<std::size_t>(2 * y) * src_stride;
    const std::uint8_t* s1 = s0 + src_stride;
    std::uint8_t* d = dst ? dst + static_cast<std::size_t>(y) * dst_stride : row_buf;
    if (cn == 2) {
      for (int x = 0; x < w; x += 2) {
        const int sx = x * 2;
        for (int k = 0; k < 2; ++k) {
          int sum = s0[sx + k] + s0[sx + k + 2] + s1[sx + k] + s1[sx + k + 2];
          d[x + k] = sat_u8(static_cast<int>(std::lrintf(static_cast<float>(sum) * 0.25f)));
        }
      }
    } else {
      for (int x = 0; x < w; ++x) {
        const int px = x / cn, k = x - px * cn;
        const int sx = px * 2 * cn + k;
        d[x] = static_cast<std::uint8_t>((s0[sx] + s0[sx + cn] + s1[sx] + s1[sx + cn] + 2) >> 2);
      }
    }
    if (!dst) sink(ctx, y, d);
  }
}

// The horizontal pass of one source row: exact integers, p0·a0 + p1·a1 (×2048).
template <int CN>
void hresize(const std::uint8_t* s, int* d, const int* xofs, const int* xofs1, const short* alpha,
             int w) {
  for (int x = 0; x < w; ++x) d[x] = s[xofs[x]] * alpha[2 * x] + s[xofs1[x]] * alpha[2 * x + 1];
}

void hresize_any(int cn, const std::uint8_t* s, int* d, const LinearResizeBuffers& b, int w) {
  switch (cn) {
    case 1:
      return hresize<1>(s, d, b.xofs.data(), b.xofs1.data(), b.alpha.data(), w);
    case 2:
      return hresize<2>(s, d, b.xofs.data(), b.xofs1.data(), b.alpha.data(), w);
    case 3:
      return hresize<3>(s, d, b.xofs.data(), b.xofs1.data(), b.alpha.data(), w);
    default:
      return hresize<4>(s, d, b.xofs.data(), b.xofs1.data(), b.alpha.data(), w);
  }
}

// The vertical pass, as OpenCV's VResizeLinearVec_32s8u computes it: mulhi16(S >> 4, b) for both
// rows, summed, (+2) >> 2, saturated. The installed OpenCV 4.6 gives this rounding for every column
// (tests/linear_resize_test.cpp checks every width 1..64), never the scalar (S0·b0 + S1·b1 + 2^21)
// >> 22, which differs by one now and then. No intermediate saturates: S >> 4 <= 255·2049 >> 4 fits
// int16, so plain int arithmetic is exact and the compiler vectorizes the loop.
void vresize(const int* s0, const int* s1, int b0, int b1, std::uint8_t* d, int w) {
  for (int x = 0; x < w; ++x) {
    const int m = (((s0[x] >> 4) * b0) >> 16) + (((s1[x] >> 4) * b1) >> 16);
    d[x] = static_cast<std::uint8_t>(std::min((m + 2) >> 2, 255));
  }
}

}  // namespace

void linear_resize_u8(const std::uint8_t* src, std::size_t src_stride, int sw, int sh, int cn,
                      std::uint8_t* dst, std::size_t dst_stride, int dw, int dh,
                      LinearResizeBuffers& buf, RowSink sink, void* ctx) {
  const int w = dw * cn;
  if (!dst) buf.out.resize(static_cast<std::size_t>(w));
  if (sw == dw && sh == dh) {  // cv::resize copies
    for (int y = 0; y < dh; ++y) {
      const std::uint8_t* s = src + static_cast<std::size_t>(y) * src_stride;
      if (dst)
        std::memcpy(dst + static_cast<std::size_t>(y) * dst_stride, s, static_cast<std::size_t>(w));
      else
        sink(ctx, y, s);
    }
    return;
  }
  const double inv_scale_x = static_cast<double>(dw) / sw;
  const double inv_scale_y = static_cast<double>(dh) / sh;
  const double scale_x = 1. / inv_scale_x, scale_y = 1. / inv_scale_y;
  const int iscale_x = sat_int(scale_x), iscale_y = sat_int(scale_y);
  const bool area_fast =
      std::abs(scale_x - iscale_x) < DBL_EPSILON && std::abs(scale_y - iscale_y) < DBL_EPSILON;
  if (area_fast && iscale_x == 2 && iscale_y == 2) {
    area_2x(src, src_stride, cn, dst, dst_stride, dw, dh, buf.out.data(), sink, ctx);
    return;
  }

  buf.xofs.resize(static_cast<std::size_t>(w));
  buf.xofs1.resize(static_cast<std::size_t>(w));
  buf.alpha.resize(static_cast<std::size_t>(w) * 2);
  for (int dx = 0; dx < dw; ++dx) {
    float fx = static_cast<float>((dx + 0.5) * scale_x - 0.5);
    int sx = cv_floor(fx);
    fx -= static_cast<float>(sx);
    if (sx < 0) fx = 0, sx = 0;
    if (sx + 1 >= sw) fx = 0, sx = sw - 1;  // past xmax OpenCV takes S[sx]·2048: the same value
    const short a0 = sat_short((1.f - fx) * kCoefScale);
    const short a1 = sat_short(fx * kCoefScale);
    const int sx1 = sx + 1 < sw ? sx + 1 : sx;
    for (int k = 0; k < cn; ++k) {
      const int i = dx * cn + k;
      buf.xofs[i] = sx * cn + k;
      buf.xofs1[i] = sx1 * cn + k;
      buf.alpha[2 * i] = a0;
      buf.alpha[2 * i + 1] = a1;
    }
  }

  buf.rows.resize(static_cast<std::size_t>(w) * 2);
  int* rows[2] = {buf.rows.data(), buf.rows.data() + w};
  int row_src[2] = {-1, -1};  // which source row each buffer holds
  for (int dy = 0; dy < dh; ++dy) {
    float fy = static_cast<float>((dy + 0.5) * scale_y - 0.5);
    const int sy = cv_floor(fy);
    fy -= static_cast<float>(sy);
    const short b0 = sat_short((1.f - fy) * kCoefScale);
    const short b1 = sat_short(fy * kCoefScale);
    const int want[2] = {std::clamp(sy, 0, sh - 1), std::clamp(sy + 1, 0, sh - 1)};
    // Reuse rows already resized: the buffers swap roles as the window moves down.
    if (row_src[0] != want[0] && row_src[1] == want[0]) {
      std::swap(rows[0], rows[1]);
      std::swap(row_src[0], row_src[1]);
    }
    for (int k = 0; k < 2; ++k) {
      if (row_src[k] == want[k]) continue;
      if (k == 1 && want[1] == want[0]) {
        std::memcpy(rows[1], rows[0], static_cast<std::size_t>(w) * sizeof(int));
      } else {
        hresize_any(cn, src + static_cast<std::size_t>(want[k]) * src_stride, rows[k], buf, w);
      }
      row_src[k] = want[k];
    }
    std::uint8_t* d = dst ? dst + static_cast<std::size_t>(dy) * dst_stride : buf.out.data();
    vresize(rows[0], rows[1], b0, b1, d, w);
    if (!dst) sink(ctx, dy, d);
  }
}

}  // namespace imgnorm::detail
