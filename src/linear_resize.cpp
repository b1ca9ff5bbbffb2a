#include "linear_resize.hpp"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// The horizontal pass of one source row: exact integers, p0·a0 + p1·a1 (×2048), so any order of
// evaluation gives OpenCV's values. 3 and 4 channels: one pmaddwd per output pixel on the two
// source pixels' bytes interleaved (p0, p1 per channel) against (a0, a1); a 3-channel pixel reads
// and writes a fourth lane that the next pixel overwrites (rows carry 4 ints of padding), so the
// pixels whose 4-byte read would pass the end of the source row go through the scalar loop.
// `rows` source rows (1 or 2) s[k] into d[k], sharing the coefficient loads.
template <int ROWS>
void hresize(int cn, const std::uint8_t* const* s, int* const* d, const LinearResizeBuffers& b,
             int w) {
  int x = 0;
#if defined(__SSE2__)
  if (cn >= 3) {
    const __m128i zero = _mm_setzero_si128();
    const int n = b.vec_pixels;
    const int* o0 = b.px_ofs0.data();
    const int* o1 = b.px_ofs1.data();
    const std::int32_t* pa = b.px_alpha.data();
    int* dd[ROWS];
    for (int k = 0; k < ROWS; ++k) dd[k] = d[k];
    for (int px = 0; px < n; ++px) {
      const int i0 = o0[px], i1 = o1[px];
      const __m128i a = _mm_set1_epi32(pa[px]);
      for (int k = 0; k < ROWS; ++k) {
        std::int32_t v0, v1;
        std::memcpy(&v0, s[k] + i0, 4);
        std::memcpy(&v1, s[k] + i1, 4);
        __m128i p = _mm_unpacklo_epi8(_mm_cvtsi32_si128(v0), _mm_cvtsi32_si128(v1));
        p = _mm_unpacklo_epi8(p, zero);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dd[k] + px * cn), _mm_madd_epi16(p, a));
      }
    }
    x = n * cn;
  } else if (cn == 1) {
    // Four output pixels at a time: the two taps are adjacent bytes (one 16-bit load each), or the
    // second weight is 0 (the left border), so vec_pixels stops before the right border.
    const __m128i zero = _mm_setzero_si128();
    const int n = b.vec_pixels & ~3;
    const int* o0 = b.px_ofs0.data();
    const std::int32_t* pa = b.px_alpha.data();
    for (int px = 0; px < n; px += 4) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pa + px));
      std::uint16_t t[ROWS][4];
      for (int k = 0; k < ROWS; ++k)
        for (int j = 0; j < 4; ++j) std::memcpy(&t[k][j], s[k] + o0[px + j], 2);
      for (int k = 0; k < ROWS; ++k) {
        std::int64_t v;
        std::memcpy(&v, t[k], 8);
        const __m128i p = _mm_unpacklo_epi8(_mm_cvtsi64_si128(v), zero);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d[k] + px), _mm_madd_epi16(p, a));
      }
    }
    x = n;
  }
#endif
  const int* xofs = b.xofs.data();
  const int* xofs1 = b.xofs1.data();
  const short* alpha = b.alpha.data();
  for (; x < w; ++x) {
    const int i0 = xofs[x], i1 = xofs1[x], a0 = alpha[2 * x], a1 = alpha[2 * x + 1];
    for (int k = 0; k < ROWS; ++k) d[k][x] = s[k][i0] * a0 + s[k][i1] * a1;
  }
}

// The vertical pass, as OpenCV's VResizeLinearVec_32s8u computes it: mulhi16(S >> 4, b) for both
// rows, summed, (+2) >> 2, saturated. The installed OpenCV 4.6 gives this rounding for every column
// (tests/linear_resize_test.cpp checks every width 1..64), never the scalar (S0·b0 + S1·b1 + 2^21)
// >> 22, which differs by one now and then. No intermediate saturates: S >> 4 <= 255·2049 >> 4 fits
// int16, so the plain int loop gives the same bytes as the SSE2 one.
void vresize(const int* s0, const int* s1, short b0, short b1, std::uint8_t* d, int w) {
  int x = 0;
#if defined(__SSE2__)
  const __m128i vb0 = _mm_set1_epi16(b0), vb1 = _mm_set1_epi16(b1), two = _mm_set1_epi16(2);
  auto load16 = [](const int* p) {
    return _mm_packs_epi32(
        _mm_srai_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), 4),
        _mm_srai_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4)), 4));
  };
  for (; x + 16 <= w; x += 16) {
    __m128i r0 =
        _mm_adds_epi16(_mm_mulhi_epi16(load16(s0 + x), vb0), _mm_mulhi_epi16(load16(s1 + x), vb1));
    __m128i r1 = _mm_adds_epi16(_mm_mulhi_epi16(load16(s0 + x + 8), vb0),
                                _mm_mulhi_epi16(load16(s1 + x + 8), vb1));
    r0 = _mm_srai_epi16(_mm_adds_epi16(r0, two), 2);
    r1 = _mm_srai_epi16(_mm_adds_epi16(r1, two), 2);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + x), _mm_packus_epi16(r0, r1));
  }
#endif
  for (; x < w; ++x) {
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
  buf.px_ofs0.resize(static_cast<std::size_t>(dw));
  buf.px_ofs1.resize(static_cast<std::size_t>(dw));
  buf.px_alpha.resize(static_cast<std::size_t>(dw));
  buf.vec_pixels = 0;
  for (int dx = 0; dx < dw; ++dx) {
    float fx = static_cast<float>((dx + 0.5) * scale_x - 0.5);
    int sx = cv_floor(fx);
    fx -= static_cast<float>(sx);
    if (sx < 0) fx = 0, sx = 0;
    if (sx + 1 >= sw) fx = 0, sx = sw - 1;  // past xmax OpenCV takes S[sx]·2048: the same value
    const short a0 = sat_short((1.f - fx) * kCoefScale);
    const short a1 = sat_short(fx * kCoefScale);
    const int sx1 = sx + 1 < sw ? sx + 1 : sx;
    buf.px_ofs0[dx] = sx * cn;
    buf.px_ofs1[dx] = sx1 * cn;
    buf.px_alpha[dx] = static_cast<std::int32_t>(
        static_cast<std::uint16_t>(a0) |
        (static_cast<std::uint32_t>(static_cast<std::uint16_t>(a1)) << 16));
    // 3/4 channels read 4 bytes at each tap, 1 channel 2 bytes at the first (both taps, or the
    // first and a byte weighted 0): only pixels whose reads stay inside the row.
    if (cn >= 3 ? sx1 * cn + 4 <= sw * cn : cn == 1 && sx + 2 <= sw) buf.vec_pixels = dx + 1;
    for (int k = 0; k < cn; ++k) {
      const int i = dx * cn + k;
      buf.xofs[i] = sx * cn + k;
      buf.xofs1[i] = sx1 * cn + k;
      buf.alpha[2 * i] = a0;
      buf.alpha[2 * i + 1] = a1;
    }
  }

  buf.rows.resize((static_cast<std::size_t>(w) + 4) * 2);  // + the 3-channel fourth lane
  int* rows[2] = {buf.rows.data(), buf.rows.data() + w + 4};
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
    const std::uint8_t* s[2] = {src + static_cast<std::size_t>(want[0]) * src_stride,
                                src + static_cast<std::size_t>(want[1]) * src_stride};
    if (row_src[0] != want[0] && row_src[1] != want[1] && want[0] != want[1]) {
      hresize<2>(cn, s, rows, buf, w);
    } else {
      if (row_src[0] != want[0]) hresize<1>(cn, s, rows, buf, w);
      if (row_src[1] != want[1]) {
        if (want[1] == want[0])
          std::memcpy(rows[1], rows[0], static_cast<std::size_t>(w) * sizeof(int));
        else
          hresize<1>(cn, s + 1, rows + 1, buf, w);
      }
    }
    row_src[0] = want[0], row_src[1] = want[1];
    std::uint8_t* d = dst ? dst + static_cast<std::size_t>(dy) * dst_stride : buf.out.data();
    vresize(rows[0], rows[1], b0, b1, d, w);
    if (!dst) sink(ctx, dy, d);
  }
}

}  // namespace imgnorm::detail
