// Full-image whitening fit on u8 images (issue 13, item 4): the exact pixel covariance (blocked
// float32 ssyrk per thread, added into double) and its eigen-decomposition (LAPACK dsyevd), timed
// on an N×H×W×C uint8 .npy. Prints one JSON line: {"images", "dimension", "threads",
// "covariance_s", "eigen_s", "fit_s"}. bench/whitening.py compares it with numpy.
//
//     whitening_bench images_u8.npy [threads [--no-eigen]]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "blas_threads.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/pixel_covariance.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: whitening_bench images_u8.npy [threads]\n");
    return 2;
  }
  const imgnorm::NpyArray a = imgnorm::read_npy(argv[1]);
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const bool eigen = !(argc > 3 && std::string(argv[3]) == "--no-eigen");
  const std::size_t n = a.header.shape[0];
  const std::size_t d = a.header.count / n;
  const std::uint8_t* px = a.as<std::uint8_t>();
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::vector<imgnorm::PixelCovariance> part;
  for (int t = 0; t < threads; ++t) part.emplace_back(d);
  {
    imgnorm::detail::BlasThreads serial(1);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (std::size_t r = static_cast<std::size_t>(t); r < n; r += threads)
          part[t].add(px + r * d);
        (void)part[t].moments();  // flushes the last block in this thread
      });
    for (auto& th : pool) th.join();
    for (int t = 1; t < threads; ++t) part[0].merge(part[t]);
  }
  const imgnorm::PixelMoments m = imgnorm::pixel_moments(part[0], 0);
  const auto t1 = clock::now();
  std::vector<double> values, vectors;
  if (eigen)
    imgnorm::symmetric_eigen_lapack(m.covariance, static_cast<int>(d), values, vectors, threads);
  else
    values = {m.covariance[0]};
  const auto t2 = clock::now();
  const double cov = std::chrono::duration<double>(t1 - t0).count();
  const double eig = std::chrono::duration<double>(t2 - t1).count();
  std::printf(
      "{\"images\": %zu, \"dimension\": %zu, \"threads\": %d, \"covariance_s\": %.4f, "
      "\"eigen_s\": %.4f, \"fit_s\": %.4f, \"largest_eigenvalue\": %.6g}\n",
      n, d, threads, cov, eig, cov + eig, values[0]);
  return 0;
}
