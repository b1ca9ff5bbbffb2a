// The full-image zca/pca fit (issue 13): the top-K eigen-decomposition (dsyevr) against the full
// one (dsyevd), and the memory the fit is checked against (full_fit_bytes, check_full_fit_memory).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "imgnorm/error.hpp"
#include "imgnorm/pixel_covariance.hpp"

namespace imgnorm {
namespace {

// Q·diag(λ)·Qᵀ with a random orthogonal Q (Gram-Schmidt) and λ_i = 1/(i+1)^1.5: distinct, with
// gaps of at least ~1e-5 relative to λ_1 among the top 40.
std::vector<double> known_spectrum(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g;
  const std::size_t N = static_cast<std::size_t>(n);
  std::vector<double> q(N * N);
  for (auto& v : q) v = g(rng);
  for (std::size_t i = 0; i < N; ++i) {  // rows orthonormal
    for (std::size_t j = 0; j < i; ++j) {
      double dot = 0;
      for (std::size_t t = 0; t < N; ++t) dot += q[i * N + t] * q[j * N + t];
      for (std::size_t t = 0; t < N; ++t) q[i * N + t] -= dot * q[j * N + t];
    }
    double norm = 0;
    for (std::size_t t = 0; t < N; ++t) norm += q[i * N + t] * q[i * N + t];
    for (std::size_t t = 0; t < N; ++t) q[i * N + t] /= std::sqrt(norm);
  }
  std::vector<double> a(N * N, 0.0);
  for (std::size_t k = 0; k < N; ++k) {
    const double lam = 1.0 / std::pow(static_cast<double>(k + 1), 1.5);
    for (std::size_t i = 0; i < N; ++i)
      for (std::size_t j = 0; j < N; ++j) a[i * N + j] += lam * q[k * N + i] * q[k * N + j];
  }
  for (std::size_t i = 0; i < N; ++i)  // exactly symmetric
    for (std::size_t j = 0; j < i; ++j) a[i * N + j] = a[j * N + i];
  return a;
}

TEST(EigenTop, DsyevrAgreesWithDsyevdOnTheTopK) {
  const int n = 160;
  const std::vector<double> a = known_spectrum(n, 3);
  for (int k : {1, 10, 40}) {
    std::vector<double> ad(a), ar(a), vd, ud, vr, ur;
    symmetric_eigen_top(ad, n, k, vd, ud, 1, EigenSolver::dsyevd);
    symmetric_eigen_top(ar, n, k, vr, ur, 1, EigenSolver::dsyevr);
    EXPECT_TRUE(ad.empty() && ar.empty()) << "the matrix is consumed";
    ASSERT_EQ(vd.size(), static_cast<std::size_t>(k));
    ASSERT_EQ(vr.size(), static_cast<std::size_t>(k));
    ASSERT_EQ(ud.size(), static_cast<std::size_t>(k) * n);
    ASSERT_EQ(ur.size(), static_cast<std::size_t>(k) * n);
    for (int i = 0; i < k; ++i) {
      const double want = 1.0 / std::pow(i + 1.0, 1.5);
      // The documented tolerance: eigenvalues 1e-12 of λ_1, eigenvectors 1e-9 per component.
      EXPECT_NEAR(vd[i], want, 1e-12) << "k " << k << " i " << i;
      EXPECT_NEAR(vr[i], want, 1e-12) << "k " << k << " i " << i;
      if (i > 0) {
        EXPECT_GT(vr[i - 1], vr[i]) << "descending";
      }
      double big = 0, norm = 0;
      std::size_t at = 0;
      for (int j = 0; j < n; ++j) {
        const double x = ur[static_cast<std::size_t>(i) * n + j];
        EXPECT_NEAR(x, ud[static_cast<std::size_t>(i) * n + j], 1e-9) << "k " << k << " i " << i;
        norm += x * x;
        if (std::fabs(x) > big) big = std::fabs(x), at = static_cast<std::size_t>(j);
      }
      EXPECT_NEAR(norm, 1.0, 1e-12);
      EXPECT_GT(ur[static_cast<std::size_t>(i) * n + at], 0) << "largest component positive";
    }
  }
}

TEST(EigenTop, AutomaticPicksDsyevrForSmallK) {
  EXPECT_EQ(eigen_solver_for(3072, 10), EigenSolver::dsyevr);
  EXPECT_EQ(eigen_solver_for(3072, 3072 / kEigenTopFraction), EigenSolver::dsyevr);
  EXPECT_EQ(eigen_solver_for(3072, 3072 / kEigenTopFraction + 1), EigenSolver::dsyevd);
  EXPECT_EQ(eigen_solver_for(3072, 3072), EigenSolver::dsyevd);
}

TEST(EigenTop, LapackAllPairsKeepsItsColumnLayout) {
  const int n = 30;
  const std::vector<double> a = known_spectrum(n, 5);
  std::vector<double> values, vectors;
  symmetric_eigen_lapack(a, n, values, vectors, 1);
  // A·u_k = λ_k·u_k for the columns u_k.
  for (int k = 0; k < n; ++k)
    for (int i = 0; i < n; ++i) {
      double av = 0;
      for (int j = 0; j < n; ++j) av += a[i * n + j] * vectors[j * n + k];
      EXPECT_NEAR(av, values[k] * vectors[i * n + k], 1e-12);
    }
}

TEST(FitMemory, CountsTheMatricesOfTheFit) {
  const std::uint64_t d = 3072, n1 = d + 1;
  // zca: the moments, plus the covariance decomposed by dsyevd in its own storage with
  // 1 + 6D + 2D² doubles and 3 + 5D ints of workspace, the eigenvalues and the pixel mean.
  const std::uint64_t zca = 8 * n1 * n1 + 8 * d * d + 8 * (1 + 6 * d + 2 * d * d) +
                            sizeof(int) * (3 + 5 * d) + 8 * d + 8 * d;
  EXPECT_EQ(full_fit_bytes(d, 0), zca);
  EXPECT_EQ(full_fit_bytes(d, d), zca - 0) << "pca with all D components: the same decomposition";
  // pca with K = 10: dsyevr, no 2D² workspace; the D×K eigenvectors instead.
  const std::uint64_t pca10 = full_fit_bytes(d, 10);
  EXPECT_GT(pca10, 8 * n1 * n1 + 8 * d * d + 8 * d * 10);
  EXPECT_LT(pca10, 8 * n1 * n1 + 8 * d * d + 8 * d * 10 + 400 * d);
  EXPECT_EQ(full_fit_bytes(std::uint64_t{1} << 40, 0), ~std::uint64_t{0});
  // Past LAPACK's 32-bit workspace sizes (2D² > 2^31) the figure is still the formula's, in 64
  // bits (LAPACK's own query would wrap), here at D = 50000:
  const std::uint64_t b = 50000, b1 = b + 1;
  EXPECT_EQ(full_fit_bytes(b, 0), 8 * b1 * b1 + 8 * b * b + 8 * (1 + 6 * b + 2 * b * b) +
                                      sizeof(int) * (3 + 5 * b) + 8 * b + 8 * b);
}

TEST(FitMemory, RefusesNamingTheFigure) {
  const std::uint64_t need = full_fit_bytes(3072, 0);
  EXPECT_NO_THROW(check_full_fit_memory(3072, 0, "zca", need, true));
  try {
    check_full_fit_memory(3072, 0, "zca", need - 1, true);
    FAIL() << "not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::too_large);
    const std::string m = e.what();
    EXPECT_NE(m.find("--mode zca: fitting the whitening of images of D = 3072 values needs 288 MiB "
                     "(" +
                     std::to_string(need) + " bytes"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("--max-memory"), std::string::npos) << m;
    EXPECT_NE(m.find("--mode zca-patch"), std::string::npos) << m;
    EXPECT_NE(m.find("--mode zca-channels"), std::string::npos) << m;
    EXPECT_NE(m.find("smaller --size"), std::string::npos) << m;
    EXPECT_EQ(m.find("--components"), std::string::npos) << m;
  }
  try {
    check_full_fit_memory(3072, 10, "pca", 1000, false);
    FAIL() << "not refused";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--mode pca:"), std::string::npos) << m;
    EXPECT_NE(m.find("fewer --components"), std::string::npos) << m;
    EXPECT_NE(m.find("the default is half of the memory"), std::string::npos) << m;
  }
}

// D = 33075 (105×105 RGB): dsyevd's workspace (1 + 6D + 2D² doubles) is beyond LAPACK's 32-bit
// sizes. Refused by the up-front check whatever the memory limit, not after the fit's pass.
TEST(FitMemory, RefusesBeyondLapacksSizesBeforeTheFit) {
  constexpr std::uint64_t kNoLimit = ~std::uint64_t{0};
  EXPECT_NO_THROW(check_full_fit_memory(32766, 0, "zca", kNoLimit, true));
  try {
    check_full_fit_memory(33075, 0, "zca", kNoLimit, true);
    FAIL() << "not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::too_large);
    const std::string m = e.what();
    EXPECT_NE(
        m.find("--mode zca: the eigen-decomposition of images of D = 33075 values needs a "
               "LAPACK workspace of " +
               std::to_string(1 + 6 * std::uint64_t{33075} + 2 * std::uint64_t{33075} * 33075)),
        std::string::npos)
        << m;
    EXPECT_NE(m.find("--mode zca-patch"), std::string::npos) << m;
  }
  // The top 10 by dsyevr need a small workspace: a memory question only.
  EXPECT_NO_THROW(check_full_fit_memory(33075, 10, "pca", kNoLimit, true));
}

}  // namespace
}  // namespace imgnorm
