// Full-image whitening (issue 13, item 4) on an N×H×W×C uint8 .npy, the library's own code:
// - the fit: the exact pixel covariance (blocked float32 ssyrk per thread, added into double),
//   then the eigen-decomposition (LAPACK dsyevd) on `threads` LAPACK threads, the numpy-comparable
//   figure; and the fit as the CLI does it: the covariance, then the zca Normalizer (dsyevd and
//   the D×D product for W on ONE thread, src/transform.cpp init_full);
// - the apply: normalize_rows of the zca Normalizer over the N images on `threads` threads (the
//   batched whitening kernel, the u8 → 0–1 centring and the float32 store included).
// Each step runs `runs` times; the medians are printed as one JSON line. With an output path,
// the first 16 normalized rows are written there (float32 .npy) for whitening.py to compare.
//
//     whitening_bench images_u8.npy [threads [runs [first_rows.npy]]]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "blas_threads.hpp"
#include "imgnorm/array.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/pixel_covariance.hpp"
#include "imgnorm/transform.hpp"
#include "whitening_kernel.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: whitening_bench images_u8.npy [threads [runs [first_rows.npy]]]\n");
    return 2;
  }
  const imgnorm::NpyArray a = imgnorm::read_npy(argv[1]);
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int runs = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
  const std::string first_rows = argc > 4 ? argv[4] : "";
  const auto& shape = a.header.shape;
  const std::size_t n = shape[0];
  const std::size_t d = a.header.count / n;
  const int h = static_cast<int>(shape[1]), w = static_cast<int>(shape[2]);
  const int c = shape.size() > 3 ? static_cast<int>(shape[3]) : 1;
  const std::uint8_t* px = a.as<std::uint8_t>();

  // The covariance: the images split over `threads` accumulators, merged.
  std::vector<double> t_cov, t_eigen, t_cli, t_apply;
  imgnorm::PixelMoments m;
  for (int run = 0; run < runs; ++run) {
    const auto t0 = clock_type::now();
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
    m = imgnorm::pixel_moments(part[0], 0);
    t_cov.push_back(seconds_since(t0));
  }
  // The eigen-decomposition on `threads` LAPACK threads (as numpy's eigh with as many).
  std::vector<double> values, vectors;
  for (int run = 0; run < runs; ++run) {
    const auto t0 = clock_type::now();
    imgnorm::symmetric_eigen_lapack(m.covariance, static_cast<int>(d), values, vectors, threads);
    t_eigen.push_back(seconds_since(t0));
  }
  // The CLI's fit after the covariance: the zca Normalizer (dsyevd and W = U·S·Uᵀ, one thread).
  imgnorm::TransformSpec spec;
  spec.mode = imgnorm::Mode::zca;
  spec.pixel_mean = m.mean;
  spec.pixel_covariance = m.covariance;
  const imgnorm::ChannelOrder order =
      c == 1 ? imgnorm::ChannelOrder::gray : imgnorm::ChannelOrder::rgb;
  std::unique_ptr<imgnorm::Normalizer> norm;
  for (int run = 0; run < runs; ++run) {
    norm.reset();
    const auto t0 = clock_type::now();
    norm = std::make_unique<imgnorm::Normalizer>(spec, order, imgnorm::OutputFormat{});
    t_cli.push_back(seconds_since(t0));
  }
  // The apply: every image through the batched kernel on `threads` threads.
  const imgnorm::ImageArray images =
      imgnorm::ImageArray::from_memory(px, imgnorm::DType::uint8, n, h, w, c, argv[1]);
  std::vector<float> out(n * d);
  for (int run = 0; run < runs; ++run) {
    const auto t0 = clock_type::now();
    imgnorm::normalize_rows(*norm, images, out.data(), threads);
    t_apply.push_back(seconds_since(t0));
  }
  if (!first_rows.empty()) {
    const std::size_t k = std::min<std::size_t>(16, n);
    imgnorm::NpyWriter wr(first_rows, imgnorm::DType::float32, {k, d});
    wr.write_rows(0, out.data(), k);
    wr.commit();
  }
  std::printf(
      "{\"images\": %zu, \"dimension\": %zu, \"threads\": %d, \"runs\": %d, "
      "\"covariance_s\": %.4f, \"eigen_s\": %.4f, \"fit_s\": %.4f, \"cli_fit_s\": %.4f, "
      "\"apply_s\": %.4f, \"vectorized\": %s, \"largest_eigenvalue\": %.17g}\n",
      n, d, threads, runs, median(t_cov), median(t_eigen), median(t_cov) + median(t_eigen),
      median(t_cov) + median(t_cli), median(t_apply),
      imgnorm::detail::WhiteningKernel::vectorized() ? "true" : "false", values[0]);
  return 0;
}
