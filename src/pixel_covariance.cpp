#include "imgnorm/pixel_covariance.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

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
  // The block buffers come with the first add(): loaded or merged moments never need them.
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
  if (block_.empty()) {
    block_.assign(static_cast<std::size_t>(kPixelCovarianceBlock) * n, 0.0f);
    product_.assign(n * n, 0.0f);
  }
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
  const std::size_t n = dimension + 1;
  if (dimension == 0 || m.size() != n * n)
    throw Error(ErrorCode::format, "not a pixel covariance: wrong size");
  return from_moments(dimension, m.data());
}

PixelCovariance PixelCovariance::from_moments(std::size_t dimension, const double* m) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorCode::format, "not a pixel covariance: " + what);
  };
  const std::size_t n = dimension + 1;
  if (dimension == 0) bad("wrong size");
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
  const std::vector<double>& m = pc.upper_moments();  // no copy of the (D+1)² matrix
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

namespace {

[[noreturn]] void eigen_failed(const char* routine, lapack_int info) {
  throw Error(ErrorCode::invalid_argument,
              std::string("the eigen-decomposition did not converge (LAPACK ") + routine +
                  " info " + std::to_string(info) + ")");
}

// LAPACK's workspace sizes: its own query (nothing is allocated, the matrix is not read) where the
// sizes fit LAPACK's 32-bit integers; beyond, LAPACK's documented minimum in 64 bits (dsyevd:
// 1 + 6n + 2n² and 3 + 5n; dsyevr: 26n and 10n, with room for dsytrd's block size), which
// symmetric_eigen_top then refuses (too_large) instead of passing LAPACK a wrapped size.
struct EigenWork {
  std::uint64_t work = 0, iwork = 0;
};
constexpr std::uint64_t kLapackIntMax =
    static_cast<std::uint64_t>(std::numeric_limits<lapack_int>::max());
EigenWork eigen_work(int n, int k, EigenSolver solver) {
  const std::uint64_t N = static_cast<std::uint64_t>(n);
  const EigenWork bound = solver == EigenSolver::dsyevd
                              ? EigenWork{1 + 6 * N + 2 * N * N, 3 + 5 * N}
                              : EigenWork{70 * N, 10 * N};
  if (bound.work > kLapackIntMax) return bound;
  double work = 0, dummy = 0;
  lapack_int iwork = 0, m = 0, isuppz = 0;
  lapack_int info = 0;
  if (solver == EigenSolver::dsyevd)
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', n, &dummy, n, &dummy, &work, -1, &iwork,
                               -1);
  else
    info = LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'I', 'L', n, &dummy, n, 0.0, 0.0, n - k + 1,
                               n, 0.0, &m, &dummy, &dummy, n, &isuppz, &work, -1, &iwork, -1);
  if (info != 0) eigen_failed(solver == EigenSolver::dsyevd ? "dsyevd" : "dsyevr", info);
  if (!(work >= 1 && work <= static_cast<double>(kLapackIntMax)) || iwork < 1) return bound;
  return {static_cast<std::uint64_t>(work), static_cast<std::uint64_t>(iwork)};
}

}  // namespace

EigenSolver eigen_solver_for(int n, int k) {
  return k > 0 && static_cast<std::int64_t>(k) * kEigenTopFraction <= n ? EigenSolver::dsyevr
                                                                        : EigenSolver::dsyevd;
}

std::uint64_t symmetric_eigen_top_bytes(int n, int k, EigenSolver solver) {
  const std::uint64_t N = static_cast<std::uint64_t>(n), K = static_cast<std::uint64_t>(k);
  if (solver == EigenSolver::automatic) solver = eigen_solver_for(n, k);
  const EigenWork w = eigen_work(n, k, solver);
  // The matrix (its storage becomes the eigenvectors for dsyevd), the eigenvalues, LAPACK's
  // workspace; dsyevr writes the K eigenvectors to a separate N×K array (and K support pairs).
  std::uint64_t bytes = N * N * sizeof(double) + N * sizeof(double) + w.work * sizeof(double) +
                        w.iwork * sizeof(lapack_int);
  if (solver == EigenSolver::dsyevr) bytes += N * K * sizeof(double) + 2 * K * sizeof(lapack_int);
  return bytes;
}

void symmetric_eigen_top(std::vector<double>& a, int n, int k, std::vector<double>& values,
                         std::vector<double>& vectors, int threads, EigenSolver solver) {
  if (n <= 0 || a.size() != static_cast<std::size_t>(n) * n)
    throw Error(ErrorCode::invalid_argument, "symmetric_eigen_top: not an n x n matrix");
  if (k == 0) k = n;
  if (k < 0 || k > n)
    throw Error(ErrorCode::invalid_argument, "symmetric_eigen_top: k must be 1 to n");
  if (solver == EigenSolver::automatic) solver = eigen_solver_for(n, k);
  const std::size_t N = static_cast<std::size_t>(n), K = static_cast<std::size_t>(k);
  // The matrix is symmetric with both triangles stored, so its row-major storage is also its
  // column-major one: LAPACK runs on it directly (LAPACKE's row-major path would transpose it into
  // a second N×N copy). Eigenvectors come back as columns, i.e. rows of the row-major storage, in
  // ascending order.
  std::vector<double> w(N), v;
  {
    detail::BlasThreads guard(threads);
    const EigenWork size = eigen_work(n, k, solver);
    if (size.work > kLapackIntMax || size.iwork > kLapackIntMax)
      throw Error(ErrorCode::too_large,
                  "the eigen-decomposition of a " + std::to_string(n) + " x " + std::to_string(n) +
                      " matrix needs a LAPACK workspace of " + std::to_string(size.work) +
                      " values, beyond LAPACK's 32-bit sizes (2^31 - 1); give a smaller --size");
    std::vector<double> work(size.work);
    std::vector<lapack_int> iwork(size.iwork);
    if (solver == EigenSolver::dsyevd) {
      const lapack_int info =
          LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', n, a.data(), n, w.data(), work.data(),
                              static_cast<lapack_int>(work.size()), iwork.data(),
                              static_cast<lapack_int>(iwork.size()));
      if (info != 0) eigen_failed("dsyevd", info);
      // The workspace goes before the K×N copy below is made (full_fit_bytes counts one or the
      // other, never both).
      std::vector<double>().swap(work);
      std::vector<lapack_int>().swap(iwork);
      // The top K: the last K rows, moved to the front in descending order.
      for (std::size_t r = 0; r < K && r < N - 1 - r; ++r) {
        std::swap_ranges(a.begin() + static_cast<std::ptrdiff_t>(r * N),
                         a.begin() + static_cast<std::ptrdiff_t>((r + 1) * N),
                         a.begin() + static_cast<std::ptrdiff_t>((N - 1 - r) * N));
        std::swap(w[r], w[N - 1 - r]);
      }
      a.resize(K * N);
      if (K < N) a.shrink_to_fit();
      v = std::move(a);
    } else {
      v.assign(K * N, 0.0);
      std::vector<lapack_int> isuppz(2 * K);
      lapack_int found = 0;
      const lapack_int info = LAPACKE_dsyevr_work(
          LAPACK_COL_MAJOR, 'V', 'I', 'L', n, a.data(), n, 0.0, 0.0, n - k + 1, n, 0.0, &found,
          w.data(), v.data(), n, isuppz.data(), work.data(), static_cast<lapack_int>(work.size()),
          iwork.data(), static_cast<lapack_int>(iwork.size()));
      if (info != 0) eigen_failed("dsyevr", info);
      if (found != k)
        throw Error(ErrorCode::invalid_argument,
                    "the eigen-decomposition found " + std::to_string(found) + " of " +
                        std::to_string(k) + " eigenvalues (LAPACK dsyevr)");
      std::vector<double>().swap(a);  // consumed
      // Ascending: reverse the K rows (and values) into descending order.
      for (std::size_t r = 0; r < K / 2; ++r) {
        std::swap_ranges(v.begin() + static_cast<std::ptrdiff_t>(r * N),
                         v.begin() + static_cast<std::ptrdiff_t>((r + 1) * N),
                         v.begin() + static_cast<std::ptrdiff_t>((K - 1 - r) * N));
        std::swap(w[r], w[K - 1 - r]);
      }
    }
  }
  a.clear();
  // Each eigenvector's largest-magnitude component made positive (the first of equal ones).
  for (std::size_t r = 0; r < K; ++r) {
    double* row = v.data() + r * N;
    std::size_t big = 0;
    for (std::size_t i = 1; i < N; ++i)
      if (std::fabs(row[i]) > std::fabs(row[big])) big = i;
    if (row[big] < 0)
      for (std::size_t i = 0; i < N; ++i) row[i] = -row[i];
  }
  w.resize(K);
  values = std::move(w);
  vectors = std::move(v);
}

void symmetric_eigen_lapack(const std::vector<double>& a, int n, std::vector<double>& values,
                            std::vector<double>& vectors, int threads) {
  if (n <= 0 || a.size() != static_cast<std::size_t>(n) * n)
    throw Error(ErrorCode::invalid_argument, "symmetric_eigen_lapack: not an n x n matrix");
  const std::size_t N = static_cast<std::size_t>(n);
  std::vector<double> m(a), rows;
  symmetric_eigen_top(m, n, n, values, rows, threads, EigenSolver::dsyevd);
  vectors.assign(N * N, 0.0);  // columns
  for (std::size_t k = 0; k < N; ++k)
    for (std::size_t i = 0; i < N; ++i) vectors[i * N + k] = rows[k * N + i];
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

namespace imgnorm {

std::uint64_t full_fit_bytes(std::uint64_t dimension, std::uint64_t components) {
  constexpr std::uint64_t kMax = ~std::uint64_t{0};
  if (dimension == 0) return 0;
  if (dimension > static_cast<std::uint64_t>(std::numeric_limits<lapack_int>::max() - 1) ||
      dimension > (std::uint64_t{1} << 28))
    return kMax;
  const std::uint64_t d = dimension, n1 = d + 1;
  const int n = static_cast<int>(d);
  const int k = components == 0 ? n : static_cast<int>(std::min(components, d));
  const std::uint64_t moments = n1 * n1 * sizeof(double);
  // (a) pixel_moments: the covariance, the mean and the column sums.
  const std::uint64_t covariance = d * d * sizeof(double) + 2 * d * sizeof(double);
  // (b) the eigen-decomposition, which consumes the covariance; the pixel mean is held throughout.
  const std::uint64_t eigen = symmetric_eigen_top_bytes(n, k) + d * sizeof(double);
  // (c) zca: W = B·Bᵀ from the scaled eigenvectors B, both D×D, and the eigenvalues.
  const std::uint64_t w = components == 0 ? 2 * d * d * sizeof(double) + 2 * d * sizeof(double) : 0;
  return moments + std::max({covariance, eigen, w});
}

void check_full_fit_memory(std::uint64_t dimension, std::uint64_t components,
                           const std::string& mode_name, std::uint64_t max_memory,
                           bool flag_given) {
  // LAPACK's 32-bit sizes first: no memory limit makes such a decomposition possible (dsyevd's
  // workspace of 1 + 6D + 2D² doubles passes 2^31 - 1 at D = 32767).
  if (dimension > 0 && dimension < (std::uint64_t{1} << 28)) {
    const int n = static_cast<int>(dimension);
    const int k = components == 0 ? n : static_cast<int>(std::min(components, dimension));
    const EigenWork size = eigen_work(n, k, eigen_solver_for(n, k));
    if (size.work > kLapackIntMax || size.iwork > kLapackIntMax)
      throw Error(ErrorCode::too_large,
                  "--mode " + mode_name +
                      ": the eigen-decomposition of images of D = " + std::to_string(dimension) +
                      " values needs a LAPACK workspace of " + std::to_string(size.work) +
                      " values, beyond LAPACK's 32-bit sizes (2^31 - 1; D <= 32766 for all "
                      "components); whiten small patches (--mode zca-patch) or the colour channels "
                      "(--mode zca-channels) instead" +
                      (components == 0 ? std::string() : ", keep fewer --components") +
                      ", or give a smaller --size");
  }
  const std::uint64_t need = full_fit_bytes(dimension, components);
  if (need <= max_memory) return;
  const std::string need_text =
      need == ~std::uint64_t{0} ? std::string("more than 16 EiB")
                                : memory_size_text(need) + " (" + std::to_string(need) + " bytes: ";
  const std::string d = std::to_string(dimension);
  throw Error(
      ErrorCode::too_large,
      "--mode " + mode_name + ": fitting the whitening of images of D = " + d + " values needs " +
          need_text + (need == ~std::uint64_t{0} ? " (" : "") +
          "the (D+1)x(D+1) moments, the D x D covariance, its eigen-decomposition" +
          (components == 0 ? " and the D x D matrix W" : "") + "), more than the memory limit of " +
          memory_size_text(max_memory) +
          (flag_given ? " (--max-memory)" : " (--max-memory; the default is half of the memory)") +
          "; whiten small patches (--mode zca-patch) or the colour channels (--mode zca-channels) "
          "instead" +
          (components == 0 ? std::string() : ", keep fewer --components") +
          ", or give a smaller --size");
}

}  // namespace imgnorm
