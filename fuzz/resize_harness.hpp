#pragma once
// The body of fuzz_resize, shared with tests/linear_resize_test.cpp (which replays
// tests/data/crashers/resize/): the fused bilinear resize against cv::resize(INTER_LINEAR) on
// fuzzer-chosen sizes, channel count and pixels. Any difference aborts.
//
// Input: bytes 0-4 choose the sizes (source and target width and height, 1-1024 each: a low byte
// each plus two high bits from byte 4), byte 5 the channel count (1-4); the pixels repeat the rest.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "linear_resize.hpp"

namespace imgnorm::fuzz {

inline void resize_bytes(const std::uint8_t* data, std::size_t size) {
  if (size < 6) return;
  auto side = [&](int i) { return 1 + (data[i] | ((data[4] >> (2 * i)) & 3) << 8); };
  const int sw = side(0), sh = side(1), dw = side(2), dh = side(3);
  const int cn = 1 + data[5] % 4;
  cv::Mat src(sh, sw, CV_8UC(cn));
  const std::uint8_t* pixels = data + 6;
  const std::size_t n = size - 6;
  std::size_t k = 0;
  for (int y = 0; y < sh; ++y) {
    std::uint8_t* row = src.ptr(y);
    for (int x = 0; x < sw * cn; ++x, ++k) row[x] = n ? pixels[k % n] : 0;
  }
  cv::Mat want;
  cv::resize(src, want, cv::Size(dw, dh), 0, 0, cv::INTER_LINEAR);
  const std::size_t stride = static_cast<std::size_t>(dw) * cn;
  std::vector<std::uint8_t> got(stride * dh);
  detail::LinearResizeBuffers buf;
  detail::linear_resize_u8(src.ptr(), src.step, sw, sh, cn, got.data(), stride, dw, dh, buf);
  for (int y = 0; y < dh; ++y)
    for (std::size_t x = 0; x < stride; ++x)
      if (got[y * stride + x] != want.ptr(y)[x]) {
        std::fprintf(stderr,
                     "fuzz_resize: %dx%dx%d -> %dx%d differs at row %d element %zu: %d vs %d\n", sw,
                     sh, cn, dw, dh, y, x, got[y * stride + x], want.ptr(y)[x]);
        std::abort();
      }
}

}  // namespace imgnorm::fuzz
