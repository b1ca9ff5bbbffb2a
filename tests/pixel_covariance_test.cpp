// PixelCovariance (issue 13, part 2): the exact (D+1)x(D+1) moments of whole images across block
// boundaries (256 rows per BLAS call), merges in any split, and the checks of from_moments.
#include <gtest/gtest.h>

#include <random>

#include "imgnorm/error.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/pixel_covariance.hpp"
#include "imgnorm/stats.hpp"

namespace imgnorm {
namespace {

std::vector<std::uint8_t> random_images(std::size_t n, std::size_t d, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n * d);
  // Mostly extreme values, so the block sums approach 256 * 255^2 (just below 2^24).
  for (auto& x : v) x = rng() % 4 == 0 ? static_cast<std::uint8_t>(rng()) : 255;
  return v;
}

std::vector<double> brute_force(const std::vector<std::uint8_t>& px, std::size_t n, std::size_t d) {
  std::vector<std::uint64_t> m((d + 1) * (d + 1), 0);
  for (std::size_t r = 0; r < n; ++r) {
    std::vector<std::uint64_t> a(d + 1, 1);
    for (std::size_t i = 0; i < d; ++i) a[i + 1] = px[r * d + i];
    for (std::size_t i = 0; i <= d; ++i)
      for (std::size_t j = 0; j <= d; ++j) m[i * (d + 1) + j] += a[i] * a[j];
  }
  return std::vector<double>(m.begin(), m.end());
}

TEST(PixelCovariance, ExactAcrossBlocksAndMerges) {
  const std::size_t n = 3 * kPixelCovarianceBlock + 17, d = 12;
  const auto px = random_images(n, d, 7);
  PixelCovariance whole(d);
  for (std::size_t r = 0; r < n; ++r) whole.add(px.data() + r * d);
  EXPECT_EQ(whole.images(), n);
  EXPECT_EQ(whole.moments(), brute_force(px, n, d));
  // Any split, merged in any order, gives the same sums.
  for (std::size_t cut : {std::size_t{1}, std::size_t{255}, std::size_t{256}, std::size_t{500}}) {
    PixelCovariance a(d), b(d);
    for (std::size_t r = 0; r < n; ++r) (r < cut ? a : b).add(px.data() + r * d);
    b.merge(a);
    EXPECT_EQ(b, whole) << cut;
    EXPECT_EQ(b.moments(), whole.moments()) << cut;
  }
}

TEST(PixelCovariance, RefusesWrongSizesAndBadMoments) {
  PixelCovariance pc(12);
  const std::vector<std::uint8_t> img(2 * 2 * 3, 9);
  try {
    pc.add(ImageView{img.data(), 2, 1, 3, 6});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "image has 6 values (2x1x3), the pixel covariance expects 12");
  }
  EXPECT_EQ(pc.images(), 0u);
  PixelCovariance other(6);
  try {
    pc.merge(other);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "cannot merge pixel covariances of 6 and 12 values per image");
  }
}

TEST(PixelCovariance, FromMomentsChecks) {
  const auto px = random_images(5, 3, 1);
  std::vector<double> m = brute_force(px, 5, 3);
  EXPECT_EQ(PixelCovariance::from_moments(3, m).moments(), m);
  auto refused = [&](std::vector<double> bad, const char* what) {
    try {
      PixelCovariance::from_moments(3, bad);
      ADD_FAILURE() << what;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), std::string("not a pixel covariance: ") + what);
    }
  };
  auto asym = m;
  asym[1] += 1;
  refused(asym, "not symmetric");
  auto big = m;
  big[5] = 5.0 * 255 * 255 + 1;  // (1, 1): beyond 255^2 per image
  refused(big, "an entry is not an exact sum");
  auto frac = m;
  frac[0] = 4.5;
  refused(frac, "the image count M[0][0] is not a whole number");
}

TEST(PixelCovariance, MemoryCheckNamesWhatIsNeeded) {
  try {
    check_pixel_covariance_memory(150528, 3, std::uint64_t{1} << 30, true);
    FAIL();
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("D = 150528"), std::string::npos) << w;
    // One matrix alone is over the limit: the need is still all three of them.
    const std::uint64_t one = PixelCovariance::bytes_for(150528);
    EXPECT_NE(w.find("needs " + memory_size_text(3 * one) + " (3 x a (D+1)x(D+1) moment matrix, " +
                     memory_size_text(one) + " each)"),
              std::string::npos)
        << w;
    EXPECT_NE(w.find("(--max-memory)"), std::string::npos) << w;
    EXPECT_NE(w.find("--mode zca-patch"), std::string::npos) << w;
    EXPECT_EQ(e.code(), ErrorCode::too_large);
  }
  EXPECT_NO_THROW(check_pixel_covariance_memory(192, 3, std::uint64_t{1} << 30, true));
}

}  // namespace
}  // namespace imgnorm

namespace imgnorm {
namespace {

// The LAPACK path (dsyevd) against the Jacobi one (symmetric_eigen, itself tested against numpy):
// the same eigenvalues and, with the same sign convention, the same vectors.
TEST(PixelCovariance, LapackEigenAgreesWithJacobi) {
  const int n = 24;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> b(n * n), a(n * n, 0.0);
  for (auto& x : b) x = u(rng);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < n; ++k) a[i * n + j] += b[k * n + i] * b[k * n + j];
  std::vector<double> v1, e1, v2, e2;
  symmetric_eigen(a, n, v1, e1);
  symmetric_eigen_lapack(a, n, v2, e2);
  ASSERT_EQ(v2.size(), static_cast<std::size_t>(n));
  for (int k = 0; k < n; ++k) {
    EXPECT_NEAR(v2[k], v1[k], 1e-10 * v1[0]) << k;
    if (k > 0) {
      EXPECT_GE(v2[k - 1], v2[k]);
    }
  }
  for (int i = 0; i < n * n; ++i) EXPECT_NEAR(e2[i], e1[i], 1e-8) << i;
}

}  // namespace
}  // namespace imgnorm
