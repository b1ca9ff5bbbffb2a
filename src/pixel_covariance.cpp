#include "imgnorm/pixel_covariance.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "blas_threads.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/pipeline.hpp"

namespace imgnorm {

namespace detail {

BlasThreads::BlasThreads(int threads) : previous_(openblas_get_num_threads()) {
  if (threads > 0) openblas_set_num_threads(threads);
}
BlasThreads::~BlasThreads() { openblas_set_num_threads(previous_); }

}  // namespace detail

PixelCovariance::PixelCovariance(std::size_t dimension) : dim_(dimension) {
  if (dimension == 0)
    throw Error(ErrorCode::invalid_argument, "pixel covariance of images with no values");
  const std::size_t n = dimension + 1;
  sums_.assign(n * n, 0.0);
  block_.assign(static_cast<std::size_t>(kPixelCovarianceBlock) * n, 0.0f);
  product_.assign(n * n, 0.0f);
}

std::uint64_t PixelCovariance::bytes_for(std::uint64_t dimension) {
  const std::uint64_t n = dimension + 1;
  // Saturates instead of wrapping: the memory check compares against the limit.
  if (n > (std::uint64_t{1} << 28)) return ~std::uint64_t{0};
  return n * n * (sizeof(double) + sizeof(float)) + kPixelCovarianceBlock * n * sizeof(float);
}

void PixelCovariance::add(const ImageView& image) {
  const std::size_t d = static_cast<std::size_t>(image.width) * image.height * image.channels;
  if (d != dim_)
    throw Error(ErrorCode::invalid_argument,
                "image has " + std::to_string(d) + " values (" + std::to_string(image.width) + "x" +
                    std::to_string(image.height) + "x" + std::to_string(image.channels) +
                    "), the pixel covariance expects " + std::to_string(dim_));
  if (images_ >= kMaxPixelCovarianceImages)
    throw Error(ErrorCode::too_large, "pixel covariance overflow: more than " +
                                          std::to_string(kMaxPixelCovarianceImages) +
                                          " images (the sums would pass 2^53)");
  const std::size_t n = dim_ + 1;
  float* row = block_.data() + static_cast<std::size_t>(pending_) * n;
  row[0] = 1.0f;
  const std::size_t w = static_cast<std::size_t>(image.width) * image.channels;
  float* out = row + 1;
  for (int y = 0; y < image.height; ++y, out += w) {
    const std::uint8_t* p = image.row(y);
    for (std::size_t i = 0; i < w; ++i) out[i] = static_cast<float>(p[i]);
  }
  ++images_;
  if (++pending_ == kPixelCovarianceBlock) flush();
}

void PixelCovariance::add(const std::uint8_t* values) {
  add(ImageView{values, static_cast<int>(dim_), 1, 1, dim_});
}

void PixelCovariance::flush() const {
  if (pending_ == 0) return;
  const int n = static_cast<int>(dim_ + 1);
  // C = Aᵀ·A over the pending rows, upper triangle: exact integers below 2^24 (see the header).
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, pending_, 1.0f, block_.data(), n, 0.0f,
              product_.data(), n);
  for (std::size_t i = 0; i < dim_ + 1; ++i) {
    double* dst = sums_.data() + i * (dim_ + 1);
    const float* src = product_.data() + i * (dim_ + 1);
    for (std::size_t j = i; j < dim_ + 1; ++j) dst[j] += static_cast<double>(src[j]);
  }
  pending_ = 0;
}

void PixelCovariance::merge(const PixelCovariance& other) {
  if (other.dim_ != dim_)
    throw Error(ErrorCode::invalid_argument, "cannot merge pixel covariances of " +
                                                 std::to_string(other.dim_) + " and " +
                                                 std::to_string(dim_) + " values per image");
  if (!enabled()) return;
  if (images_ > kMaxPixelCovarianceImages - other.images_)
    throw Error(ErrorCode::too_large, "pixel covariance overflow: more than " +
                                          std::to_string(kMaxPixelCovarianceImages) + " images");
  other.flush();
  flush();
  for (std::size_t i = 0; i < sums_.size(); ++i) sums_[i] += other.sums_[i];
  images_ += other.images_;
}

std::vector<double> PixelCovariance::moments() const {
  flush();
  const std::size_t n = dim_ + 1;
  std::vector<double> m(sums_);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < i; ++j) m[i * n + j] = m[j * n + i];
  return m;
}

PixelCovariance PixelCovariance::from_moments(std::size_t dimension, const std::vector<double>& m) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorCode::format, "not a pixel covariance: " + what);
  };
  const std::size_t n = dimension + 1;
  if (dimension == 0 || m.size() != n * n) bad("wrong size");
  const double count = m[0];
  if (!(count >= 0) || count != std::floor(count) ||
      count > static_cast<double>(kMaxPixelCovarianceImages))
    bad("the image count M[0][0] is not a whole number");
  PixelCovariance pc(dimension);
  pc.images_ = static_cast<std::uint64_t>(count);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i; j < n; ++j) {
      const double v = m[i * n + j];
      if (v != m[j * n + i]) bad("not symmetric");
      const double limit = count * (i == 0 ? 1.0 : 255.0) * (j == 0 ? 1.0 : 255.0);
      if (!(v >= 0 && v <= limit) || v != std::floor(v)) bad("an entry is not an exact sum");
      pc.sums_[i * n + j] = v;
    }
  return pc;
}

bool PixelCovariance::operator==(const PixelCovariance& other) const {
  if (dim_ != other.dim_ || images_ != other.images_) return false;
  flush();
  other.flush();
  return sums_ == other.sums_;
}

PixelMoments pixel_moments(const PixelCovariance& pc, int ddof) {
  const std::uint64_t count = pc.images();
  if (count <= static_cast<std::uint64_t>(ddof))
    throw Error(ErrorCode::invalid_argument,
                "the pixel covariance needs more than " + std::to_string(ddof) + " image" +
                    (ddof == 1 ? "" : "s") + " (ddof " + std::to_string(ddof) + "), it has " +
                    std::to_string(count));
  const std::vector<double> m = pc.moments();
  const std::size_t d = pc.dimension(), n = d + 1;
  PixelMoments out;
  out.dimension = d;
  out.images = count;
  out.mean.resize(d);
  out.covariance.resize(d * d);
  using i128 = __int128;
  std::vector<std::uint64_t> s(d);
  for (std::size_t i = 0; i < d; ++i) {
    s[i] = static_cast<std::uint64_t>(m[1 + i]);
    out.mean[i] = static_cast<double>(s[i]) / static_cast<double>(count);
  }
  const double denom = static_cast<double>(count) * static_cast<double>(count - ddof);
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = i; j < d; ++j) {
      const auto q = static_cast<std::uint64_t>(m[(1 + i) * n + 1 + j]);
      const i128 num = static_cast<i128>(count) * q - static_cast<i128>(s[i]) * s[j];
      const double v = static_cast<double>(num) / denom;
      out.covariance[i * d + j] = v;
      out.covariance[j * d + i] = v;
    }
  return out;
}

void symmetric_eigen_lapack(const std::vector<double>& a, int n, std::vector<double>& values,
                            std::vector<double>& vectors, int threads) {
  if (n <= 0 || a.size() != static_cast<std::size_t>(n) * n)
    throw Error(ErrorCode::invalid_argument, "symmetric_eigen_lapack: not an n x n matrix");
  const std::size_t N = static_cast<std::size_t>(n);
  std::vector<double> v(a), w(N);
  {
    detail::BlasThreads guard(threads);
    const lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, v.data(), n, w.data());
    if (info != 0)
      throw Error(ErrorCode::invalid_argument,
                  "the eigen-decomposition did not converge (LAPACK dsyevd info " +
                      std::to_string(info) + ")");
  }
  // LAPACK: ascending, columns. Reversed to descending; each column's largest-magnitude
  // component made positive (the first of equal ones).
  values.assign(N, 0.0);
  vectors.assign(N * N, 0.0);
  for (std::size_t k = 0; k < N; ++k) {
    const std::size_t src = N - 1 - k;
    values[k] = w[src];
    std::size_t big = 0;
    for (std::size_t i = 1; i < N; ++i)
      if (std::fabs(v[i * N + src]) > std::fabs(v[big * N + src])) big = i;
    const double sign = v[big * N + src] < 0 ? -1.0 : 1.0;
    for (std::size_t i = 0; i < N; ++i) vectors[i * N + k] = sign * v[i * N + src];
  }
}

std::string pixel_covariance_path(const std::string& stats_json) {
  std::filesystem::path p(stats_json);
  std::string stem = p.filename().string();
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".json") == 0)
    stem.resize(stem.size() - 5);
  return (p.parent_path() / (stem + ".pixel-covariance.npy")).string();
}

void check_pixel_covariance_memory(std::uint64_t dimension, int accumulators,
                                   std::uint64_t max_memory, bool flag_given) {
  const std::uint64_t one = PixelCovariance::bytes_for(dimension);
  const std::uint64_t k = static_cast<std::uint64_t>(std::max(accumulators, 1));
  const std::uint64_t need = one > ~std::uint64_t{0} / k ? ~std::uint64_t{0} : one * k;
  if (need <= max_memory) return;
  const std::string need_text =
      need == ~std::uint64_t{0} ? std::string("more than 16 EiB") : memory_size_text(need);
  throw Error(
      ErrorCode::too_large,
      "the pixel covariance of images of D = " + std::to_string(dimension) + " values needs " +
          need_text + " (" + std::to_string(k) + " x a (D+1)x(D+1) " + "moment matrix, " +
          memory_size_text(one) + " each), more than the memory " + "limit of " +
          memory_size_text(max_memory) +
          (flag_given ? " (--max-memory)" : " (--max-memory; the default is half of the memory)") +
          "; whiten small patches (--mode zca-patch) or the colour channels "
          "(--mode zca-channels) instead, or give a smaller --size or fewer --threads");
}

}  // namespace imgnorm
