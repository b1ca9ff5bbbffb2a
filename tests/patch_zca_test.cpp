// Patch ZCA: the exact K×K patch moments (the blocked kernel against a plain loop over every patch,
// at every width from K up), their merge, stats.json and the raw form the distributed jobs
// exchange; the zca-patch map against the formula evaluated directly.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "accumulator_access.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/transform.hpp"

using namespace imgnorm;

namespace {

std::vector<std::uint8_t> random_pixels(int w, int h, int c, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * h * c);
  for (auto& v : px) v = static_cast<std::uint8_t>(rng() % 256);
  return px;
}

// The plain reference: every patch position, every pair of dimensions.
struct Moments {
  std::uint64_t count = 0;
  std::vector<std::uint64_t> sum, cross;
};
void add_reference(Moments& m, const std::vector<std::uint8_t>& px, int w, int h, int c, int k) {
  const int d = k * k * c;
  m.sum.resize(d, 0);
  m.cross.resize(static_cast<std::size_t>(d) * d, 0);
  std::vector<std::uint64_t> v(d);
  for (int y = 0; y + k <= h; ++y)
    for (int x = 0; x + k <= w; ++x) {
      for (int dy = 0; dy < k; ++dy)
        for (int dx = 0; dx < k; ++dx)
          for (int ch = 0; ch < c; ++ch)
            v[(dy * k + dx) * c + ch] = px[((y + dy) * w + (x + dx)) * c + ch];
      ++m.count;
      for (int i = 0; i < d; ++i) {
        m.sum[i] += v[i];
        for (int j = 0; j < d; ++j) m.cross[i * d + j] += v[i] * v[j];
      }
    }
}

}  // namespace

TEST(patch_zca, kernel_equals_plain_loop_at_every_width) {
  for (int c : {1, 3})
    for (int k : {1, 3, 5}) {
      for (int w = k; w <= k + 20; ++w) {
        const int h = k + w % 4;
        // A padded stride, as a view into a larger buffer.
        const std::size_t stride = static_cast<std::size_t>(w) * c + 7;
        std::vector<std::uint8_t> buf(stride * h, 0xAB);
        const auto px = random_pixels(w, h, c, static_cast<std::uint32_t>(w * 31 + k * 7 + c));
        for (int y = 0; y < h; ++y)
          std::memcpy(buf.data() + y * stride, px.data() + static_cast<std::size_t>(y) * w * c,
                      static_cast<std::size_t>(w) * c);
        Accumulator acc(c);
        acc.enable_patch(k);
        acc.add(ImageView{buf.data(), w, h, c, stride});
        Moments ref;
        add_reference(ref, px, w, h, c, k);
        ASSERT_EQ(acc.patch_count(), ref.count) << "w " << w << " k " << k << " c " << c;
        ASSERT_EQ(acc.patch_sums(), ref.sum) << "w " << w << " k " << k << " c " << c;
        ASSERT_EQ(acc.patch_cross(), ref.cross) << "w " << w << " k " << k << " c " << c;
      }
    }
}

TEST(patch_zca, merge_is_exact_and_refuses_another_k) {
  const int w = 13, h = 9, k = 3;
  Accumulator all(3), a(3), b(3);
  for (Accumulator* x : {&all, &a, &b}) x->enable_patch(k);
  Moments ref;
  for (int i = 0; i < 4; ++i) {
    const auto px = random_pixels(w, h, 3, 100 + i);
    const ImageView v{px.data(), w, h, 3, static_cast<std::size_t>(w) * 3};
    all.add(v);
    (i % 2 ? a : b).add(v);
    add_reference(ref, px, w, h, 3, k);
  }
  a.merge(b);
  EXPECT_EQ(a.patch_cross(), all.patch_cross());
  EXPECT_EQ(all.patch_cross(), ref.cross);
  EXPECT_EQ(a.patch_count(), 4u * 11 * 7);

  Accumulator other(3);
  other.enable_patch(5);
  try {
    a.merge(other);
    FAIL() << "merged different K";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "cannot merge statistics with different patch moments (--patch 3 vs --patch 5)");
  }
  Accumulator none(3);
  EXPECT_THROW(a.merge(none), Error);
}

TEST(patch_zca, refuses_even_k_and_small_images) {
  Accumulator acc(3);
  for (int k : {0, 2, 4, 11, -3}) {
    try {
      acc.enable_patch(k);
      FAIL() << k;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()),
                "--patch " + std::to_string(k) + ": the patch side must be odd, 1 to 9");
    }
  }
  acc.enable_patch(5);
  const auto px = random_pixels(4, 8, 3, 1);
  try {
    acc.add(ImageView{px.data(), 4, 8, 3, 12});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "image is 4x8, smaller than the 5x5 patch (--patch)");
  }
}

TEST(patch_zca, stats_json_and_raw_form_keep_the_moments) {
  StatsFile st;
  st.tool_version = "test";
  st.source = "x";
  st.recipe.size = {10, 8};
  st.acc = Accumulator(3);
  st.acc.enable_patch(3);
  for (int i = 0; i < 3; ++i) {
    const auto px = random_pixels(10, 8, 3, 7 + i);
    st.acc.add(ImageView{px.data(), 10, 8, 3, 30});
  }
  const StatsFile back = stats_from_json(to_json(st));
  EXPECT_EQ(back.acc, st.acc);
  EXPECT_EQ(back.acc.patch_size(), 3);
  EXPECT_EQ(to_json(back), to_json(st));

  std::vector<std::uint8_t> raw;
  detail::AccumulatorAccess::append_raw(st.acc, raw);
  Accumulator r;
  EXPECT_EQ(detail::AccumulatorAccess::read_raw(r, raw.data(), raw.size()), raw.size());
  EXPECT_EQ(r, st.acc);
  EXPECT_EQ(detail::AccumulatorAccess::read_raw(r, raw.data(), raw.size() - 8), 0u);

  // Without patch moments the file has no "patch" and the accumulator none.
  StatsFile plain = st;
  plain.acc = Accumulator(3);
  const auto px = random_pixels(10, 8, 3, 1);
  plain.acc.add(ImageView{px.data(), 10, 8, 3, 30});
  EXPECT_EQ(to_json(plain).find("\"patch\""), std::string::npos);
  EXPECT_EQ(stats_from_json(to_json(plain)).acc.patch_size(), 0);
  EXPECT_THROW(summarize_patches(plain.acc), Error);
}

TEST(patch_zca, normalizer_applies_the_centre_rows_with_zero_outside) {
  // The statistics of random images; then one image through the Normalizer against the formula.
  const int w = 7, h = 6, k = 3, c = 3;
  Accumulator acc(c);
  acc.enable_patch(k);
  for (int i = 0; i < 5; ++i) {
    const auto px = random_pixels(w, h, c, 50 + i);
    acc.add(ImageView{px.data(), w, h, c, static_cast<std::size_t>(w) * c});
  }
  const PatchSummary ps = summarize_patches(acc);
  TransformSpec spec;
  spec.mode = Mode::zca_patch;
  spec.patch = k;
  spec.patch_mean = ps.mean;
  spec.patch_covariance = ps.covariance;
  spec.eps = 0.01;
  OutputFormat fmt;
  fmt.channels = ChannelOrder::bgr;  // the output swaps R and B
  const Normalizer norm(spec, ChannelOrder::rgb, fmt);
  const int d = k * k * c;
  std::vector<double> vals, vecs;
  symmetric_eigen(ps.covariance, d, vals, vecs);
  const double eps = 0.01 * 255 * 255;
  const auto px = random_pixels(w, h, c, 99);
  std::vector<float> out(static_cast<std::size_t>(w) * h * c);
  norm.apply(ImageView{px.data(), w, h, c, static_cast<std::size_t>(w) * c}, out.data());
  const int centre = (k / 2 * k + k / 2) * c;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int o = 0; o < c; ++o) {
        const int ic = 2 - o;
        double ref = 0;
        for (int j = 0; j < d; ++j) {
          const int dy = j / c / k, dx = j / c % k, ch = j % c;
          const int yy = y + dy - 1, xx = x + dx - 1;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          double wij = 0;
          for (int i = 0; i < d; ++i)
            wij += vecs[(centre + ic) * d + i] / std::sqrt(vals[i] + eps) * vecs[j * d + i];
          ref += wij * (px[(yy * w + xx) * c + ch] - ps.mean[j]);
        }
        const float got = out[(y * w + x) * c + o];
        EXPECT_NEAR(got, ref, 1e-6 * std::max(1.0, std::fabs(ref))) << x << "," << y << "," << o;
      }
  EXPECT_THROW(norm.apply(ImageView{px.data(), 2, 2, c, 6}, out.data()), Error);
  spec.eps = -1;
  EXPECT_THROW(Normalizer(spec, ChannelOrder::rgb, fmt), Error);
  spec.eps = 0.01;
  spec.patch = 5;  // the moments are 3x3
  try {
    Normalizer bad(spec, ChannelOrder::rgb, fmt);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("zca-patch --patch 5 needs the 5x5 patch moments", 0), 0u)
        << e.what();
  }
}
