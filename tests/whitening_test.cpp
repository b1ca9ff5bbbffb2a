// Channel PCA/ZCA: the eigen-decomposition and the zca-channels / pca-channels maps, against the
// formulas evaluated directly in double.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/transform.hpp"

using namespace imgnorm;

namespace {

std::vector<double> random_spd(int n, std::mt19937& rng, double scale) {
  std::normal_distribution<double> g(0, 1);
  std::vector<double> b(n * n), a(n * n, 0.0);
  for (double& v : b) v = g(rng) * scale;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < n; ++k) a[i * n + j] += b[i * n + k] * b[j * n + k];
  return a;
}

std::vector<std::uint8_t> pixels(int w, int h, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * h * 3);
  // Correlated channels, as in photographs.
  for (std::size_t i = 0; i < px.size(); i += 3) {
    const int base = static_cast<int>(rng() % 200);
    px[i] = static_cast<std::uint8_t>(base + rng() % 50);
    px[i + 1] = static_cast<std::uint8_t>(base / 2 + rng() % 100);
    const int blue = 255 - base - static_cast<int>(rng() % 40);
    px[i + 2] = static_cast<std::uint8_t>(blue < 0 ? 0 : blue);
  }
  return px;
}

}  // namespace

TEST(whitening, symmetric_eigen_reconstructs_orthonormal_descending_signed) {
  std::mt19937 rng(5);
  for (int n = 1; n <= 4; ++n) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<double> a = random_spd(n, rng, trial % 2 ? 70.0 : 0.01);
      std::vector<double> vals, vecs;
      symmetric_eigen(a, n, vals, vecs);
      double norm = 0;
      for (double v : a) norm = std::max(norm, std::fabs(v));
      for (int k = 0; k + 1 < n; ++k) EXPECT_GE(vals[k], vals[k + 1]);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          double r = 0, dot = 0;
          for (int k = 0; k < n; ++k) {
            r += vecs[i * n + k] * vals[k] * vecs[j * n + k];
            dot += vecs[k * n + i] * vecs[k * n + j];
          }
          EXPECT_NEAR(r, a[i * n + j], 1e-12 * norm) << "A = U L U^T";
          EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-12) << "U^T U = I";
        }
      for (int k = 0; k < n; ++k) {
        int big = 0;
        for (int i = 1; i < n; ++i)
          if (std::fabs(vecs[i * n + k]) > std::fabs(vecs[big * n + k])) big = i;
        EXPECT_GT(vecs[big * n + k], 0) << "largest component positive";
      }
    }
  }
  // Already diagonal (and repeated eigenvalues): the identity's columns, sorted.
  std::vector<double> vals, vecs;
  symmetric_eigen({1, 0, 0, 0, 3, 0, 0, 0, 2}, 3, vals, vecs);
  EXPECT_EQ(vals, (std::vector<double>{3, 2, 1}));
  EXPECT_EQ(vecs, (std::vector<double>{0, 0, 1, 1, 0, 0, 0, 1, 0}));
}

TEST(whitening, zca_and_pca_equal_the_formula_in_double) {
  const int w = 9, h = 7;
  const std::vector<std::uint8_t> px = pixels(w, h, 3);
  Accumulator acc(3);
  acc.add(ImageView{px.data(), w, h, 3, static_cast<std::size_t>(w) * 3});
  const Summary s = summarize(acc);
  for (Mode mode : {Mode::zca_channels, Mode::pca_channels}) {
    for (double eps : {0.0, 1e-5, 1e-2}) {
      for (Layout layout : {Layout::nhwc, Layout::nchw}) {
        for (ChannelOrder out : {ChannelOrder::rgb, ChannelOrder::bgr}) {
          TransformSpec spec;
          spec.mode = mode;
          spec.eps = eps;
          for (const auto& c : s.channel) spec.mean.push_back(c.mean);
          spec.covariance = s.covariance;
          const Normalizer norm(spec, ChannelOrder::rgb, {layout, DType::float32, out});
          std::vector<float> got(px.size());
          norm.apply(ImageView{px.data(), w, h, 3, static_cast<std::size_t>(w) * 3}, got.data());
          // The reference: U, λ from symmetric_eigen, ε scaled to 0–255 units.
          std::vector<double> vals, u;
          symmetric_eigen(s.covariance, 3, vals, u);
          const double e = eps * 255 * 255;
          const bool swap = mode == Mode::zca_channels && out == ChannelOrder::bgr;
          for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {
              double z[3];
              for (int c = 0; c < 3; ++c) z[c] = px[(y * w + x) * 3 + c] - s.channel[c].mean;
              double proj[3];
              for (int k = 0; k < 3; ++k) {
                proj[k] = 0;
                for (int c = 0; c < 3; ++c) proj[k] += u[c * 3 + k] * z[c];
                proj[k] /= std::sqrt(vals[k] + e);
              }
              for (int k = 0; k < 3; ++k) {
                const int ch = swap ? 2 - k : k;
                double ref = proj[ch];
                if (mode == Mode::zca_channels) {
                  ref = 0;
                  for (int j = 0; j < 3; ++j) ref += u[ch * 3 + j] * proj[j];
                }
                const std::size_t o = layout == Layout::nhwc
                                          ? static_cast<std::size_t>((y * w + x) * 3 + k)
                                          : static_cast<std::size_t>((k * h + y) * w + x);
                EXPECT_NEAR(got[o], ref, 1e-5 * (1 + std::fabs(ref)))
                    << to_string(mode) << " eps " << eps << " at " << x << "," << y << "," << k;
              }
            }
        }
      }
    }
  }
}

TEST(whitening, whitened_pixels_have_identity_covariance_and_invert_exactly) {
  const int w = 40, h = 30;
  const std::vector<std::uint8_t> px = pixels(w, h, 11);
  const ImageView view{px.data(), w, h, 3, static_cast<std::size_t>(w) * 3};
  Accumulator acc(3);
  acc.add(view);
  const Summary s = summarize(acc);
  for (Mode mode : {Mode::zca_channels, Mode::pca_channels}) {
    TransformSpec spec;
    spec.mode = mode;
    spec.eps = 0.0;
    for (const auto& c : s.channel) spec.mean.push_back(c.mean);
    spec.covariance = s.covariance;
    const Normalizer norm(spec, ChannelOrder::rgb,
                          {Layout::nhwc, DType::float32, ChannelOrder::rgb});
    std::vector<float> y(px.size());
    norm.apply(view, y.data());
    const std::size_t n = px.size() / 3;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) {
        double m_a = 0, m_b = 0, ab = 0;
        for (std::size_t i = 0; i < n; ++i) {
          m_a += y[i * 3 + a];
          m_b += y[i * 3 + b];
          ab += static_cast<double>(y[i * 3 + a]) * y[i * 3 + b];
        }
        EXPECT_NEAR(ab / n - (m_a / n) * (m_b / n), a == b ? 1.0 : 0.0, 1e-5);
      }
    std::vector<std::uint8_t> back(px.size());
    invert(y.data(), Layout::nhwc, DType::float32, false, norm.pixel_map(), w, h, back.data());
    EXPECT_EQ(back, px) << to_string(mode);
    // The unit does not change whitening.
    TransformSpec unit1 = spec;
    unit1.unit = 1;
    std::vector<float> y1(px.size());
    Normalizer(unit1, ChannelOrder::rgb, {Layout::nhwc, DType::float32, ChannelOrder::rgb})
        .apply(view, y1.data());
    EXPECT_EQ(0, std::memcmp(y.data(), y1.data(), y.size() * sizeof(float)));
  }
}

TEST(whitening, refusals) {
  TransformSpec spec;
  spec.mode = Mode::zca_channels;
  spec.mean = {1, 2, 3};
  const OutputFormat f{};
  EXPECT_THROW(Normalizer(spec, ChannelOrder::rgb, f), Error);  // no covariance
  spec.covariance = {1, 0, 0, 0, 1, 0, 0, 0, 0};                // singular
  spec.eps = 0.0;
  try {
    Normalizer(spec, ChannelOrder::rgb, f);
    FAIL() << "a singular covariance without eps must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("singular"), std::string::npos) << e.what();
  }
  spec.eps = 1e-5;
  EXPECT_NO_THROW(Normalizer(spec, ChannelOrder::rgb, f));
  spec.eps = -1.0;
  EXPECT_THROW(Normalizer(spec, ChannelOrder::rgb, f), Error);
  spec.eps.reset();
  spec.matrix = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  EXPECT_THROW(Normalizer(spec, ChannelOrder::rgb, f), Error);
  EXPECT_EQ(parse_mode("zca-channels"), Mode::zca_channels);
  EXPECT_EQ(parse_mode("pca_channels"), Mode::pca_channels);
  spec.matrix.clear();
  EXPECT_TRUE(needs_dataset_stats(spec));
}
