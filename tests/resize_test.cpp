#include "imgnorm/resize.hpp"

#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>
#include <random>

#include "imgnorm/error.hpp"

using namespace imgnorm;

namespace {

Image random_image(int w, int h, int c, unsigned seed) {
  Image img(w, h, c);
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i < img.size_bytes(); ++i) img.data()[i] = rng() & 0xFF;
  return img;
}

cv::Mat mat_of(const Image& img) {
  return cv::Mat(img.height(), img.width(), CV_8UC(img.channels()),
                 const_cast<uint8_t*>(img.data()));
}

Recipe recipe_of(ResizeMode mode, Size size, Interp interp = Interp::linear) {
  Recipe r;
  r.resize = mode;
  r.size = size;
  r.interp = interp;
  return r;
}

}  // namespace

TEST(resize, stretch_equals_cv_resize_for_every_interpolation) {
  Image src = random_image(97, 61, 3, 1);
  for (Interp interp :
       {Interp::linear, Interp::area, Interp::nearest, Interp::cubic, Interp::lanczos}) {
    const int flags[] = {cv::INTER_LINEAR, cv::INTER_AREA, cv::INTER_NEAREST, cv::INTER_CUBIC,
                         cv::INTER_LANCZOS4};
    Image out, scratch;
    resize(src.view(), recipe_of(ResizeMode::stretch, {40, 33}, interp), out, scratch);
    cv::Mat ref;
    cv::resize(mat_of(src), ref, cv::Size(40, 33), 0, 0, flags[static_cast<int>(interp)]);
    ASSERT_EQ(out.width(), 40);
    ASSERT_EQ(out.height(), 33);
    EXPECT_EQ(0, std::memcmp(out.data(), ref.data, out.size_bytes())) << to_string(interp);
  }
}

TEST(resize, stretch_respects_source_stride) {
  Image big = random_image(50, 20, 3, 2);
  ImageView v = big.view();
  v.width = 31;  // a window: stride stays that of the 50-wide image
  Image out, scratch;
  resize(v, recipe_of(ResizeMode::stretch, {16, 16}), out, scratch);
  cv::Mat ref;
  cv::resize(mat_of(big)(cv::Rect(0, 0, 31, 20)), ref, cv::Size(16, 16));
  EXPECT_EQ(0, std::memcmp(out.data(), ref.data, out.size_bytes()));
}

TEST(resize, crop_is_shorter_side_resize_then_center_crop) {
  // 120x80 to 32: shorter side (80) → 32, longer int(120*32/80) = 48, crop x offset round(16/2)
  // = 8.
  Image src = random_image(120, 80, 3, 3);
  Image out, scratch;
  resize(src.view(), recipe_of(ResizeMode::crop, {32, 32}), out, scratch);
  cv::Mat scaled;
  cv::resize(mat_of(src), scaled, cv::Size(48, 32));
  cv::Mat ref = scaled(cv::Rect(8, 0, 32, 32)).clone();
  ASSERT_EQ(out.width(), 32);
  ASSERT_EQ(out.height(), 32);
  EXPECT_EQ(0, std::memcmp(out.data(), ref.data, out.size_bytes()));
  EXPECT_EQ(needed_source_size(recipe_of(ResizeMode::crop, {32, 32}), {120, 80}), (Size{48, 32}));
}

TEST(resize, crop_offsets_round_half_to_even_as_torchvision) {
  // 33 wide scaled to 33x? then crop 30: offset round(1.5) = 2; for 31 → round(0.5) = 0.
  Image src = random_image(33, 30, 1, 4);
  Image out, scratch;
  resize(src.view(), recipe_of(ResizeMode::crop, {30, 30}), out, scratch);
  for (int y = 0; y < 30; ++y)
    ASSERT_EQ(0, std::memcmp(out.row(y), src.row(y) + 2, 30)) << "row " << y;
  Image src2 = random_image(31, 30, 1, 5);
  resize(src2.view(), recipe_of(ResizeMode::crop, {30, 30}), out, scratch);
  for (int y = 0; y < 30; ++y) ASSERT_EQ(0, std::memcmp(out.row(y), src2.row(y), 30));
}

TEST(resize, pad_letterboxes_with_pad_value) {
  Image src = random_image(100, 50, 3, 6);
  Recipe r = recipe_of(ResizeMode::pad, {40, 40});
  r.pad_value = 7;
  Image out, scratch;
  resize(src.view(), r, out, scratch);
  // Fits as 40x20, centered at y = 10.
  cv::Mat scaled;
  cv::resize(mat_of(src), scaled, cv::Size(40, 20));
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 40 * 3; ++x) {
      uint8_t expect = (y >= 10 && y < 30) ? scaled.ptr(y - 10)[x] : 7;
      ASSERT_EQ(out.row(y)[x], expect) << "at " << x << "," << y;
    }
  }
}

TEST(resize, upscales_small_images) {
  Image src = random_image(1, 1, 3, 7);
  Image out, scratch;
  for (ResizeMode m : {ResizeMode::stretch, ResizeMode::crop}) {
    resize(src.view(), recipe_of(m, {8, 6}), out, scratch);
    ASSERT_EQ(out.width(), 8);
    ASSERT_EQ(out.height(), 6);
    for (std::size_t i = 0; i < out.size_bytes(); ++i) ASSERT_EQ(out.data()[i], src.data()[i % 3]);
  }
  // pad: the 1x1 image fits as 6x6, centered at x = 1..6; columns 0 and 7 are the pad value.
  Recipe r = recipe_of(ResizeMode::pad, {8, 6});
  r.pad_value = 9;
  resize(src.view(), r, out, scratch);
  ASSERT_EQ(out.width(), 8);
  ASSERT_EQ(out.height(), 6);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 8; ++x)
      for (int ch = 0; ch < 3; ++ch) {
        const bool inside = x >= 1 && x <= 6;
        ASSERT_EQ(out.row(y)[x * 3 + ch], inside ? src.data()[ch] : 9) << x << "," << y;
      }
}

TEST(resize, none_requires_the_recipe_size) {
  Image src = random_image(10, 10, 3, 8);
  Image out, scratch;
  resize(src.view(), recipe_of(ResizeMode::none, {10, 10}), out, scratch);
  EXPECT_EQ(0, std::memcmp(out.data(), src.data(), src.size_bytes()));
  try {
    resize(src.view(), recipe_of(ResizeMode::none, {12, 10}), out, scratch);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("10x10"), std::string::npos) << e.what();
  }
}

TEST(resize, parse_size_and_names) {
  EXPECT_EQ(parse_size("224"), (Size{224, 224}));
  EXPECT_EQ(parse_size("320x240"), (Size{320, 240}));
  for (const char* bad : {"", "0", "x", "12x", "-3", "1e3", "70000", "3x4x5"})
    EXPECT_THROW(parse_size(bad), Error) << bad;
  EXPECT_EQ(parse_resize_mode("crop"), ResizeMode::crop);
  EXPECT_EQ(parse_interp("lanczos"), Interp::lanczos);
  EXPECT_EQ(parse_channel_order("bgr"), ChannelOrder::bgr);
  EXPECT_THROW(parse_interp("bilinear"), Error);
}
