// The fused bilinear resize (src/linear_resize.cpp) against the real cv::resize(INTER_LINEAR) that
// it replaces: identical bytes for every source and target width 1..64 (a few heights), every
// height 1..64 (a few widths), several hundred random larger pairs, 1 to 4 channels.

#include "linear_resize.hpp"

#include "../fuzz/resize_harness.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>
#include <vector>

using imgnorm::detail::linear_resize_u8;
using imgnorm::detail::LinearResizeBuffers;

namespace {

cv::Mat random_mat(int w, int h, int cn, std::mt19937& rng) {
  cv::Mat m(h, w, CV_8UC(cn));
  // Mostly noise, sometimes extremes (0/255 runs) where saturation and rounding edges live.
  const int kind = static_cast<int>(rng() % 4);
  for (int y = 0; y < h; ++y) {
    std::uint8_t* p = m.ptr(y);
    for (int x = 0; x < w * cn; ++x) {
      std::uint32_t r = rng();
      p[x] = kind == 0 ? static_cast<std::uint8_t>(r & 1 ? 255 : 0) : static_cast<std::uint8_t>(r);
    }
  }
  return m;
}

// Returns an empty string when identical, else where they first differ.
std::string compare(const cv::Mat& src, int dw, int dh, LinearResizeBuffers& buf) {
  cv::Mat want;
  cv::resize(src, want, cv::Size(dw, dh), 0, 0, cv::INTER_LINEAR);
  const int cn = src.channels();
  // A padded destination stride, to catch writes past the row.
  const std::size_t stride = static_cast<std::size_t>(dw) * cn + 3;
  std::vector<std::uint8_t> got(stride * dh, 0xA5);
  linear_resize_u8(src.ptr(), src.step, src.cols, src.rows, cn, got.data(), stride, dw, dh, buf);
  for (int y = 0; y < dh; ++y) {
    for (int x = 0; x < dw * cn; ++x) {
      if (got[y * stride + x] != want.ptr(y)[x])
        return std::to_string(src.cols) + "x" + std::to_string(src.rows) + "x" +
               std::to_string(cn) + " -> " + std::to_string(dw) + "x" + std::to_string(dh) +
               ": first difference at row " + std::to_string(y) + " element " + std::to_string(x) +
               ": " + std::to_string(got[y * stride + x]) + " vs cv " +
               std::to_string(want.ptr(y)[x]);
    }
    for (std::size_t x = static_cast<std::size_t>(dw) * cn; x < stride; ++x)
      if (got[y * stride + x] != 0xA5) return "wrote past the row";
  }
  return {};
}

// Also checks the row-sink mode delivers the same rows in order.
struct SinkCheck {
  const cv::Mat* want;
  int next = 0;
  bool ok = true;
};

void sink_row(void* ctx, int y, const std::uint8_t* row) {
  auto* c = static_cast<SinkCheck*>(ctx);
  if (y != c->next++ || std::memcmp(row, c->want->ptr(y),
                                    static_cast<std::size_t>(c->want->cols) * c->want->channels()))
    c->ok = false;
}

}  // namespace

TEST(linear_resize, every_width_1_to_64_matches_cv_resize) {
  std::mt19937 rng(15);
  LinearResizeBuffers buf;
  const int heights[][2] = {{1, 1}, {3, 7}, {9, 4}};
  for (int cn = 1; cn <= 4; ++cn)
    for (auto [sh, dh] : heights)
      for (int sw = 1; sw <= 64; ++sw) {
        cv::Mat src = random_mat(sw, sh, cn, rng);
        for (int dw = 1; dw <= 64; ++dw) {
          std::string diff = compare(src, dw, dh, buf);
          ASSERT_EQ(diff, "");
        }
      }
}

TEST(linear_resize, every_height_1_to_64_matches_cv_resize) {
  std::mt19937 rng(16);
  LinearResizeBuffers buf;
  // Widths chosen so that the SIMD part and the scalar tail of the vertical pass both occur.
  const int widths[][2] = {{1, 1}, {5, 3}, {10, 21}};
  for (int cn = 1; cn <= 4; ++cn)
    for (auto [sw, dw] : widths)
      for (int sh = 1; sh <= 64; ++sh) {
        cv::Mat src = random_mat(sw, sh, cn, rng);
        for (int dh = 1; dh <= 64; ++dh) {
          std::string diff = compare(src, dw, dh, buf);
          ASSERT_EQ(diff, "");
        }
      }
}

TEST(linear_resize, random_large_pairs_match_cv_resize) {
  std::mt19937 rng(17);
  LinearResizeBuffers buf;
  for (int i = 0; i < 400; ++i) {
    const int cn = 1 + static_cast<int>(rng() % 4);
    auto side = [&] { return 1 + static_cast<int>(rng() % (i % 4 == 0 ? 1000 : 300)); };
    const int sw = side(), sh = side();
    int dw = side(), dh = side();
    if (i % 10 == 1) dw = sw / 2, dh = sh / 2;  // near the exact-2× shortcut
    if (i % 10 == 2) dw = (sw + 1) / 2 * 2 == sw ? sw / 2 : dw, dh = sh % 2 ? dh : sh / 2;
    dw = std::max(dw, 1), dh = std::max(dh, 1);
    cv::Mat src = random_mat(sw, sh, cn, rng);
    ASSERT_EQ(compare(src, dw, dh, buf), "");
  }
}

TEST(linear_resize, exact_2x_downscale_and_same_size_match_cv_resize) {
  std::mt19937 rng(18);
  LinearResizeBuffers buf;
  for (int cn = 1; cn <= 4; ++cn)
    for (int dw = 1; dw <= 40; ++dw) {
      cv::Mat src = random_mat(2 * dw, 2 * (41 - dw), cn, rng);
      ASSERT_EQ(compare(src, dw, 41 - dw, buf), "");
      ASSERT_EQ(compare(src, src.cols, src.rows, buf), "");
    }
}

TEST(linear_resize, row_sink_gets_the_same_rows_in_order) {
  std::mt19937 rng(19);
  LinearResizeBuffers buf;
  for (auto [sw, sh, dw, dh] : {std::array{37, 29, 16, 16}, std::array{20, 10, 10, 5},
                                std::array{8, 8, 8, 8}, std::array{5, 9, 40, 33}}) {
    for (int cn = 1; cn <= 4; ++cn) {
      cv::Mat src = random_mat(sw, sh, cn, rng), want;
      cv::resize(src, want, cv::Size(dw, dh), 0, 0, cv::INTER_LINEAR);
      SinkCheck check{&want};
      linear_resize_u8(src.ptr(), src.step, sw, sh, cn, nullptr, 0, dw, dh, buf, sink_row, &check);
      EXPECT_TRUE(check.ok);
      EXPECT_EQ(check.next, dh);
    }
  }
}

// The fuzz target's seeds and every input that ever made it fail, through the same body.
TEST(linear_resize, fuzz_seeds_and_crashers_replay) {
  namespace fs = std::filesystem;
  int replayed = 0;
  for (const std::string& dir : {std::string(IMGNORM_SOURCE_DIR) + "/fuzz/seeds/resize",
                                 std::string(IMGNORM_TEST_DATA) + "/crashers/resize"}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      std::ifstream in(e.path(), std::ios::binary);
      std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                      std::istreambuf_iterator<char>());
      imgnorm::fuzz::resize_bytes(bytes.data(), bytes.size());  // aborts on a difference
      ++replayed;
    }
  }
  EXPECT_GE(replayed, 3);
}
