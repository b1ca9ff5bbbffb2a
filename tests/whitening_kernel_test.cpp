// The full-image whitening kernel (src/whitening_kernel.hpp): the fast path, the portable path and
// the plain reference loop give the same bits for every shape, batch size and ragged tail, and an
// image's outputs do not depend on the batch it is in nor on the threads.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "job_arena.hpp"
#include "whitening_kernel.hpp"

using imgnorm::detail::whitening_reference;
using imgnorm::detail::WhiteningKernel;

namespace {

std::vector<double> random_values(std::size_t n, std::mt19937_64& rng) {
  // Mixed magnitudes and signs, so that rounding differs between summation orders.
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> e(-20, 20);
  std::vector<double> v(n);
  for (double& x : v) x = std::ldexp(u(rng), e(rng));
  return v;
}

std::vector<double> packed(const std::vector<double>& z, std::size_t batch, std::size_t dims) {
  std::vector<double> zp(WhiteningKernel::packed_size(batch, dims));
  WhiteningKernel::pack_rows(z.data(), batch, dims, zp.data());
  return zp;
}

std::vector<double> rows_of(const std::vector<double>& z, std::size_t first, std::size_t n,
                            std::size_t dims) {
  return std::vector<double>(z.begin() + first * dims, z.begin() + (first + n) * dims);
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Y of the kernel against the reference, for the first `rows` outputs of each batch row.
void expect_reference(const WhiteningKernel& k, const std::vector<double>& w,
                      const std::vector<double>& z, std::size_t batch, bool portable,
                      const char* what) {
  std::vector<double> y(batch * k.stride(), std::nan("")), ref(batch * k.rows());
  k.run(packed(z, batch, k.dims()).data(), batch, y.data(), portable);
  whitening_reference(w.data(), k.rows(), k.dims(), z.data(), batch, ref.data(), k.rows());
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < k.rows(); ++i)
      ASSERT_TRUE(same_bits(y[b * k.stride() + i], ref[b * k.rows() + i]))
          << what << ": D " << k.dims() << " rows " << k.rows() << " batch " << batch << " at ("
          << b << ", " << i << "): " << y[b * k.stride() + i] << " vs " << ref[b * k.rows() + i];
}

}  // namespace

TEST(WhiteningKernel, FastAndPortablePathsEqualTheReferenceBitForBit) {
  std::mt19937_64 rng(13);
  // D across the block size (256) and its edges; rows across the panel size (12), pca-like K < D.
  const std::size_t shapes[][2] = {{1, 1},     {3, 3},     {7, 7},     {12, 12},   {13, 13},
                                   {192, 192}, {255, 255}, {256, 256}, {257, 257}, {300, 300},
                                   {600, 600}, {5, 600},   {25, 768},  {1, 40}};
  for (const auto& s : shapes) {
    const std::size_t rows = s[0], dims = s[1];
    const std::vector<double> w = random_values(rows * dims, rng);
    const WhiteningKernel k(w.data(), rows, dims);
    EXPECT_EQ(k.stride() % WhiteningKernel::kPanel, 0u);
    EXPECT_GE(k.stride(), rows);
    for (std::size_t batch : {1u, 2u, 3u, 4u, 5u, 7u, 8u, 9u, 17u}) {
      const std::vector<double> z = random_values(batch * dims, rng);
      expect_reference(k, w, z, batch, false, "fast");
      expect_reference(k, w, z, batch, true, "portable");
    }
  }
}

TEST(WhiteningKernel, AnImagesOutputsDoNotDependOnItsBatchNorOnThreads) {
  std::mt19937_64 rng(7);
  const std::size_t rows = 150, dims = 700, n = 23;
  const std::vector<double> w = random_values(rows * dims, rng);
  const std::vector<double> z = random_values(n * dims, rng);
  const WhiteningKernel k(w.data(), rows, dims);
  std::vector<double> alone(n * k.stride());
  for (std::size_t b = 0; b < n; ++b)
    k.run(packed(rows_of(z, b, 1, dims), 1, dims).data(), 1, alone.data() + b * k.stride());
  // Batches of every size from every start, serial and over 1–3 threads.
  for (std::size_t start = 0; start < n; start += 5)
    for (std::size_t size = 1; start + size <= n; size += 3)
      for (int threads : {0, 1, 2, 3}) {
        std::vector<double> y(size * k.stride());
        const std::vector<double> zp = packed(rows_of(z, start, size, dims), size, dims);
        if (threads == 0)
          k.run(zp.data(), size, y.data());
        else
          imgnorm::detail::JobArena(threads).execute(
              [&] { k.run_parallel(zp.data(), size, y.data()); });
        for (std::size_t b = 0; b < size; ++b)
          for (std::size_t i = 0; i < rows; ++i)
            ASSERT_TRUE(same_bits(y[b * k.stride() + i], alone[(start + b) * k.stride() + i]))
                << "image " << start + b << " in a batch of " << size << " from " << start << ", "
                << threads << " threads, output " << i;
      }
}

TEST(WhiteningKernel, MatchesTheExactProductWithinRounding) {
  // Small integers: every partial sum is exact in double, so Y is the exact product.
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> v(-100, 100);
  const std::size_t rows = 31, dims = 517, batch = 6;
  std::vector<double> w(rows * dims), z(batch * dims);
  for (double& x : w) x = v(rng);
  for (double& x : z) x = v(rng);
  const WhiteningKernel k(w.data(), rows, dims);
  std::vector<double> y(batch * k.stride());
  k.run(packed(z, batch, dims).data(), batch, y.data());
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < rows; ++i) {
      long long exact = 0;
      for (std::size_t j = 0; j < dims; ++j)
        exact += static_cast<long long>(w[i * dims + j]) * static_cast<long long>(z[b * dims + j]);
      ASSERT_EQ(y[b * k.stride() + i], static_cast<double>(exact)) << b << ", " << i;
    }
}
