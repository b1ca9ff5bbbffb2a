// A Normalizer refuses, when it is built, a map that would write inf or NaN for some input 0–255
// (issue 10, item 5). Each test sweeps parameters across the edge and compares the refusal with a
// brute-force run of the kernels over every input value: refused exactly when some output is not
// finite.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "half.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/transform.hpp"

namespace {

using imgnorm::ChannelOrder;
using imgnorm::DType;
using imgnorm::Layout;
using imgnorm::Mode;
using imgnorm::Normalizer;
using imgnorm::OutputFormat;
using imgnorm::TransformSpec;

// An RGB image whose pixels are every corner and edge point of the 0–255 cube on a coarse grid
// plus every value 0–255 in every channel (x, x, x) and (x, 255 - x, x).
std::vector<std::uint8_t> probe_pixels(int* width) {
  std::vector<std::uint8_t> px;
  const int grid[] = {0, 1, 85, 170, 254, 255};
  for (int r : grid)
    for (int g : grid)
      for (int b : grid) px.insert(px.end(), {std::uint8_t(r), std::uint8_t(g), std::uint8_t(b)});
  for (int x = 0; x < 256; ++x) {
    px.insert(px.end(), {std::uint8_t(x), std::uint8_t(x), std::uint8_t(x)});
    px.insert(px.end(), {std::uint8_t(x), std::uint8_t(255 - x), std::uint8_t(x)});
  }
  *width = static_cast<int>(px.size() / 3);
  return px;
}

// Brute force: evaluates the map of `spec` (built for float32, unchecked in float16) in double as
// the kernels do, for every input value 0–255 of every channel (every pixel of a mean image; every
// probe pixel of a channel matrix, the cube's corners among them), rounds it to `dtype` and tells
// whether some value is not finite.
bool kernels_write_non_finite(const TransformSpec& spec, DType dtype) {
  auto bad = [&](double v) {
    const double out = dtype == DType::float32
                           ? static_cast<double>(static_cast<float>(v))
                           : imgnorm::detail::half_to_float(imgnorm::detail::double_to_half(v));
    return !std::isfinite(out);
  };
  std::optional<Normalizer> n;
  try {
    n.emplace(spec, ChannelOrder::rgb, OutputFormat{});
  } catch (const imgnorm::Error&) {
    return true;  // not even finite in float32
  }
  const imgnorm::PixelMap map = n->pixel_map();
  if (spec.mode == Mode::mean_image) {
    const std::vector<double>& m = n->mean_image_scaled();
    for (std::size_t i = 0; i < m.size(); ++i)
      for (int x = 0; x < 256; ++x) {
        imgnorm::ChannelMap cm = map.affine.ch[i % 3];
        cm.m = m[i];
        if (bad(cm(x))) return true;
      }
    return false;
  }
  if (!map.is_linear()) {
    for (int k = 0; k < 3; ++k)
      for (int x = 0; x < 256; ++x)
        if (bad(map.affine.ch[k](x))) return true;
    return false;
  }
  int w = 0;
  const std::vector<std::uint8_t> px = probe_pixels(&w);
  for (std::size_t i = 0; i < px.size(); i += 3)
    for (int k = 0; k < 3; ++k) {
      double acc = 0;
      for (int j = 0; j < 3; ++j) {
        const imgnorm::ChannelMap& g = map.affine.ch[j];
        acc += map.matrix[k * 3 + j] * ((px[i + j] / g.d - g.m) / g.s);
      }
      if (bad(map.affine.ch[k].t + map.affine.ch[k].g * acc)) return true;
    }
  return false;
}

bool refused(const TransformSpec& spec, DType dtype, std::string* message = nullptr) {
  OutputFormat f;
  f.dtype = dtype;
  try {
    Normalizer n(spec, ChannelOrder::rgb, f);
    return false;
  } catch (const imgnorm::Error& e) {
    EXPECT_EQ(e.code(), imgnorm::ErrorCode::invalid_argument);
    if (message) *message = e.what();
    return true;
  }
}

// The kernels themselves, for an accepted spec: every output value finite.
void expect_kernels_finite(const TransformSpec& spec, DType dtype) {
  int w = 0;
  std::vector<std::uint8_t> px = probe_pixels(&w);
  OutputFormat f;
  f.dtype = dtype;
  Normalizer n(spec, ChannelOrder::rgb, f);
  std::vector<std::uint8_t> out(px.size() * 4);
  n.apply({px.data(), w, 1, 3, px.size()}, out.data());
  for (std::size_t i = 0; i < px.size(); ++i) {
    double v = 0;
    if (dtype == DType::float32) {
      float x;
      std::memcpy(&x, out.data() + i * 4, 4);
      v = x;
    } else {
      std::uint16_t h;
      std::memcpy(&h, out.data() + i * 2, 2);
      v = imgnorm::half_to_float(h);
    }
    ASSERT_TRUE(std::isfinite(v)) << "element " << i;
  }
}

TEST(finite_output, custom_std_on_float16_is_refused_naming_the_flags) {
  TransformSpec spec;
  spec.mode = Mode::custom;
  spec.mean = {0, 0, 0};
  spec.std = {0.001, 0.001, 0.001};
  std::string msg;
  ASSERT_TRUE(refused(spec, DType::float16, &msg));
  EXPECT_NE(msg.find("--mode custom would write non-finite values"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float16's largest finite value 65504"), std::string::npos) << msg;
  EXPECT_NE(msg.find("check --mean/--std"), std::string::npos) << msg;
  EXPECT_NE(msg.find("or use --dtype float32"), std::string::npos) << msg;
  // The first input that overflows: 66 / 0.001 = 66000 (65.5 / 0.001 would round to 65504).
  EXPECT_NE(msg.find("channel R maps x = 66 to 66000"), std::string::npos) << msg;
  EXPECT_FALSE(refused(spec, DType::float32));
  expect_kernels_finite(spec, DType::float32);
}

TEST(finite_output, scale_range_overflowing_double_gives_nan_and_is_refused) {
  TransformSpec spec;
  spec.mode = Mode::scale;
  spec.range = std::make_pair(-1e308, 1e308);
  std::string msg;
  ASSERT_TRUE(refused(spec, DType::float32, &msg));
  EXPECT_NE(msg.find("--mode scale would write non-finite values: channel R maps x = 0 to nan"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("check --range"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("--dtype"), std::string::npos) << msg;  // float32: no dtype advice
}

// Custom std swept across float16's and float32's edges: refused exactly when the kernels would
// write a non-finite value for some input.
TEST(finite_output, custom_refusal_matches_brute_force) {
  int accepted = 0, rejected = 0;
  for (DType dtype : {DType::float16, DType::float32}) {
    const double edge = dtype == DType::float16 ? 255.0 / 65520.0 : 255.0 / 3.4028235677973366e38;
    for (double k : {0.5, 0.99, 0.999999, 1.0, 1.000001, 1.01, 2.0}) {
      for (double mean : {0.0, -1000.0, 128.0}) {
        TransformSpec spec;
        spec.mode = Mode::custom;
        spec.mean = {mean, 0, 0};
        spec.std = {edge * k, 1, 1};
        const bool want = kernels_write_non_finite(spec, dtype);
        EXPECT_EQ(refused(spec, dtype), want) << to_string(dtype) << " k " << k << " mean " << mean;
        if (!want) expect_kernels_finite(spec, dtype);
        (want ? rejected : accepted)++;
      }
    }
  }
  EXPECT_GT(accepted, 5);
  EXPECT_GT(rejected, 5);
}

// A channel-mixing matrix is checked at the corners of the pixel cube.
TEST(finite_output, matrix_refusal_matches_brute_force) {
  int accepted = 0, rejected = 0;
  for (double scale : {1.0, 100.0, 200.0, 257.0, 300.0, 1e4}) {
    for (double sign : {1.0, -1.0}) {
      TransformSpec spec;
      spec.mode = Mode::scale;
      // Output channel 0 mixes all inputs: its extreme is at a corner, not on the diagonal.
      spec.matrix = {scale, sign * scale, scale, 0, 1, 0, 0, 0, 1};
      spec.range = std::make_pair(0.0, 255.0);
      const bool want = kernels_write_non_finite(spec, DType::float16);
      std::string msg;
      EXPECT_EQ(refused(spec, DType::float16, &msg), want) << scale << " " << sign;
      if (want) {
        EXPECT_NE(msg.find("maps pixel ("), std::string::npos) << msg;
        ++rejected;
      } else {
        expect_kernels_finite(spec, DType::float16);
        ++accepted;
      }
    }
  }
  EXPECT_GT(accepted, 2);
  EXPECT_GT(rejected, 2);
}

// mean-image with --divide-std: the extremes pair x in {0, 255} with the mean image's extremes.
TEST(finite_output, mean_image_refusal_matches_brute_force) {
  int w = 0;
  probe_pixels(&w);
  int accepted = 0, rejected = 0;
  for (double sd : {1e-3, 3.8e-3, 3.9e-3, 4e-3, 1.0}) {
    TransformSpec spec;
    spec.mode = Mode::mean_image;
    spec.mean_image_std = true;
    spec.std = {sd, 50, 50};
    spec.mean_image_size = {w, 2};
    for (int i = 0; i < w * 2 * 3; ++i) spec.mean_image.push_back((i * 37) % 256);
    const bool want = kernels_write_non_finite(spec, DType::float16);
    std::string msg;
    EXPECT_EQ(refused(spec, DType::float16, &msg), want) << sd;
    if (want) {
      EXPECT_NE(msg.find("the statistics' std"), std::string::npos) << msg;
    }
    (want ? rejected : accepted)++;
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

TEST(finite_output, minmax_range_is_checked) {
  TransformSpec spec;
  spec.mode = Mode::minmax;
  spec.range = std::make_pair(0.0, 70000.0);
  std::string msg;
  ASSERT_TRUE(refused(spec, DType::float16, &msg));
  EXPECT_NE(msg.find("maps (x - min) / (max - min) = 1 to 70000"), std::string::npos) << msg;
  EXPECT_FALSE(refused(spec, DType::float32));
  spec.range = std::make_pair(-1e308, 1e308);
  ASSERT_TRUE(refused(spec, DType::float32, &msg));
  EXPECT_NE(msg.find("to nan"), std::string::npos) << msg;
  // Within float16: every image's output finite, constant channels included.
  spec.range = std::make_pair(-65504.0, 65504.0);
  ASSERT_FALSE(refused(spec, DType::float16));
  expect_kernels_finite(spec, DType::float16);
}

// The per-image standardizations reach sqrt(n - 1) for n values with one apart: the bound the
// size check uses, measured on small images, and the size at which float16 overflows.
TEST(finite_output, per_image_bound_is_reached_and_checked_by_size) {
  for (Mode mode : {Mode::per_image, Mode::per_image_channel})
    for (int unit : {255, 1})
      for (int side : {1, 2, 5, 16}) {
        std::vector<std::uint8_t> px(static_cast<std::size_t>(side) * side * 3, 0);
        px[0] = 255;
        TransformSpec spec;
        spec.mode = mode;
        spec.unit = unit;
        Normalizer n(spec, ChannelOrder::rgb, {});
        std::vector<float> out(px.size());
        n.apply({px.data(), side, side, 3, static_cast<std::size_t>(side) * 3}, out.data());
        double top = 0;
        for (float v : out) top = std::max(top, std::fabs(double(v)));
        const double values = double(side) * side * (mode == Mode::per_image ? 3 : 1);
        // Reached in unit 255; in unit 1 the floor 1/sqrt(n) (not scaled) can keep it lower.
        if (unit == 255) {
          EXPECT_NEAR(top, std::sqrt(values - 1), 1e-4 * std::sqrt(values)) << side;
        }
        for (float v : out) EXPECT_LE(std::fabs(v), std::sqrt(values - 1) * (1 + 1e-6));
      }
  TransformSpec spec;
  spec.mode = Mode::per_image_channel;
  OutputFormat f16;
  f16.dtype = DType::float16;
  Normalizer n(spec, ChannelOrder::rgb, f16);
  n.check_image_size({4096, 4096});
  n.check_image_size({65519, 65519});  // sqrt(65519^2 - 1) rounds to 65504
  try {
    n.check_image_size({65535, 65535});
    FAIL() << "not refused";
  } catch (const imgnorm::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("an image of 65535x65535 with one pixel apart"), std::string::npos) << msg;
    EXPECT_NE(msg.find("check --size"), std::string::npos) << msg;
  }
  spec.mode = Mode::per_image;  // 3 values per pixel: overflows sooner
  Normalizer p(spec, ChannelOrder::rgb, f16);
  EXPECT_THROW(p.check_image_size({40000, 40000}), imgnorm::Error);
  Normalizer p32(spec, ChannelOrder::rgb, {});
  p32.check_image_size({65535, 65535});
}

// Every preset and every dataset mode with ordinary statistics passes in both dtypes.
TEST(finite_output, ordinary_specs_are_accepted) {
  for (Mode mode : {Mode::imagenet, Mode::caffe, Mode::inception, Mode::clip, Mode::scale,
                    Mode::standardize, Mode::center, Mode::minmax_dataset, Mode::zca_channels,
                    Mode::pca_channels, Mode::minmax, Mode::per_image}) {
    TransformSpec spec;
    spec.mode = mode;
    if (mode == Mode::standardize || mode == Mode::center || mode == Mode::zca_channels ||
        mode == Mode::pca_channels) {
      spec.mean = {120, 110, 100};
      if (mode == Mode::standardize) spec.std = {60, 55, 50};
    }
    if (mode == Mode::zca_channels || mode == Mode::pca_channels)
      spec.covariance = {3600, 2000, 1000, 2000, 3000, 900, 1000, 900, 2500};
    if (mode == Mode::minmax_dataset) spec.min = {0, 3, 5}, spec.max = {255, 250, 240};
    for (DType dtype : {DType::float32, DType::float16}) {
      EXPECT_FALSE(refused(spec, dtype)) << to_string(mode);
      if (mode != Mode::minmax && mode != Mode::per_image) expect_kernels_finite(spec, dtype);
    }
  }
}

}  // namespace
