#pragma once
/// \file pixel_covariance.hpp
/// Exact second moments of whole images (`stats --pixel-covariance`, docs/whitening.md): for
/// images of D = H·W·C u8 values, the (D+1)×(D+1) moment matrix
///
///     M = Σ over images of [1; x]·[1; x]ᵀ     (M[0][0] = n, M[0][1+i] = Σxᵢ, M[1+i][1+j] = Σxᵢxⱼ)
///
/// from which the per-pixel mean and the D×D pixel covariance follow. Every entry is an integer,
/// kept exactly in double while it stays below 2^53: at most 255² per image, so up to
/// kMaxPixelCovarianceImages (138,519,019,680) images. Images are added in blocks of up to
/// kPixelCovarianceBlock rows as float32, multiplied with one BLAS syrk (products ≤ 65025, sums
/// of 256 of them < 2^24: every partial sum is an exact integer whatever the order), and the
/// block's result added into the double matrix: the result never depends on block boundaries,
/// thread count, shards or merge order.
///
///     imgnorm::PixelCovariance pc(32 * 32 * 3);
///     for (auto& img : images) pc.add(img.view());
///     std::vector<double> m = pc.moments();           // (D+1)×(D+1), row-major, symmetric

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"

namespace imgnorm {

/// Rows multiplied per BLAS call: 256 · 255² < 2^24, the float32 integer range.
inline constexpr int kPixelCovarianceBlock = 256;
/// The most images whose sums stay exact in double: floor(2^53 / 255²).
inline constexpr std::uint64_t kMaxPixelCovarianceImages = (std::uint64_t{1} << 53) / (255u * 255u);

/// Exact, mergeable (D+1)×(D+1) moment matrix of images of D u8 values. An empty object
/// (dimension 0) is "not enabled".
class IMGNORM_API PixelCovariance {
 public:
  PixelCovariance() = default;
  /// Allocates the matrix ((D+1)² doubles); the block buffers follow with the first add().
  explicit PixelCovariance(std::size_t dimension);

  /// Bytes one accumulator holds for dimension D: the double matrix, the float32 block result and
  /// the float32 block of rows. What the memory check counts (per thread).
  static std::uint64_t bytes_for(std::uint64_t dimension);

  std::size_t dimension() const { return dim_; }
  bool enabled() const { return dim_ > 0; }
  std::uint64_t images() const { return images_; }

  /// Adds one image (width·height·channels must equal dimension()). Error(invalid_argument)
  /// otherwise; Error(too_large) past kMaxPixelCovarianceImages.
  void add(const ImageView& image);
  /// Adds one image given as its D values (row-major, packed).
  void add(const std::uint8_t* values);
  /// Adds another accumulator's sums (exact). Error(invalid_argument) when dimensions differ.
  void merge(const PixelCovariance& other);

  /// The moment matrix M, (D+1)×(D+1) row-major, both triangles filled; exact integers.
  std::vector<double> moments() const;
  /// M's storage without a copy: (D+1)×(D+1) row-major, only the upper triangle (i <= j) valid.
  const std::vector<double>& upper_moments() const {
    flush();
    return sums_;
  }
  /// Replaces the sums by `m` (as moments() returns it). Error(format) when it is not a moment
  /// matrix of whole images: not symmetric, not whole non-negative numbers, M[0][0] not the count,
  /// a sum beyond 255·n, a second moment beyond 255²·n.
  static PixelCovariance from_moments(std::size_t dimension, const std::vector<double>& m);
  /// The same from (D+1)² values at `m` (a loaded .npy's data, without a copy into a vector).
  static PixelCovariance from_moments(std::size_t dimension, const double* m);

  /// Equal sums (pending blocks included).
  bool operator==(const PixelCovariance& other) const;

 private:
  void flush() const;  // multiplies the pending block into sums_

  std::size_t dim_ = 0;
  std::uint64_t images_ = 0;
  // Upper triangle (i <= j) of M, row-major (D+1)×(D+1); the block state is mutable so that
  // const readers can flush it (not concurrently with each other).
  mutable std::vector<double> sums_;
  mutable std::vector<float> block_;  // kPixelCovarianceBlock × (D+1): rows [1, x]
  mutable std::vector<float> product_;
  mutable int pending_ = 0;
};

/// The training statistics of whole images as float64: per-pixel mean μ (D) and covariance Σ
/// (D×D, row-major, 0–255 units), Σ = (Σxxᵀ − n·μμᵀ)/(n − ddof), each entry from the exact
/// integer n·Σxᵢxⱼ − Σxᵢ·Σxⱼ (128-bit) rounded once. Error(invalid_argument) for n <= ddof.
struct PixelMoments {
  std::size_t dimension = 0;
  std::uint64_t images = 0;
  std::vector<double> mean;
  std::vector<double> covariance;
};
IMGNORM_API PixelMoments pixel_moments(const PixelCovariance& pc, int ddof);

/// Eigen-decomposition of a symmetric n×n matrix through LAPACK (dsyevd): `values` descending,
/// `vectors` row-major with the eigenvectors as columns, each with its largest-magnitude
/// component positive (the first of equal ones), as symmetric_eigen. `threads` BLAS threads (0:
/// OpenBLAS's default).
IMGNORM_API void symmetric_eigen_lapack(const std::vector<double>& a, int n,
                                        std::vector<double>& values, std::vector<double>& vectors,
                                        int threads = 0);

/// The LAPACK routine of symmetric_eigen_top.
enum class EigenSolver {
  automatic,  ///< eigen_solver_for(n, k)
  dsyevd,     ///< divide and conquer: all n eigenpairs (the top k kept)
  dsyevr,     ///< MRRR / bisection with RANGE='I': only the top k are computed
};
/// dsyevr is used when k · kEigenTopFraction <= n (measured, docs/whitening.md).
inline constexpr int kEigenTopFraction = 8;
/// The routine `automatic` picks for the top k of n eigenpairs.
IMGNORM_API EigenSolver eigen_solver_for(int n, int k);

/// The top `k` eigenpairs (k = 0: all n) of the symmetric n×n matrix `a` (row-major; its upper
/// triangle is read), which is consumed: LAPACK works in its storage, and with dsyevd that
/// storage becomes `vectors`, so no second n×n matrix is made. `values`: k eigenvalues,
/// descending. `vectors`: k×n row-major, row i the eigenvector of values[i], its largest-magnitude
/// component positive (the first of equal ones). `threads` BLAS threads (0: OpenBLAS's default).
IMGNORM_API void symmetric_eigen_top(std::vector<double>& a, int n, int k,
                                     std::vector<double>& values, std::vector<double>& vectors,
                                     int threads = 0, EigenSolver solver = EigenSolver::automatic);
/// The bytes symmetric_eigen_top holds at its peak for the top k of n: the matrix, LAPACK's
/// workspace (as LAPACK's own query gives it: dsyevd needs 1 + 6n + 2n² doubles), the
/// eigenvalues and, for dsyevr, the n×k eigenvectors.
IMGNORM_API std::uint64_t symmetric_eigen_top_bytes(int n, int k,
                                                    EigenSolver solver = EigenSolver::automatic);

/// The peak bytes of fitting `--mode zca` (`components` = 0) or `--mode pca --components K`
/// (`components` = K) to images of D values, from the moment matrix on: the (D+1)² moments held,
/// plus the largest of (a) the D×D covariance made from them, (b) the eigen-decomposition
/// (symmetric_eigen_top_bytes; the covariance is consumed by it), (c) for zca, the eigenvectors and
/// W, both D×D. Saturates at 2^64 − 1 for a D beyond 2^31 − 1.
IMGNORM_API std::uint64_t full_fit_bytes(std::uint64_t dimension, std::uint64_t components);
/// Refuses, before anything is allocated, a zca/pca fit whose full_fit_bytes exceed `max_memory`
/// (Error too_large: what it needs, the limit, and --mode zca-patch / zca-channels, --components
/// or a smaller --size). `mode_name` is "zca" or "pca"; `flag_given` as for
/// check_pixel_covariance_memory.
IMGNORM_API void check_full_fit_memory(std::uint64_t dimension, std::uint64_t components,
                                       const std::string& mode_name, std::uint64_t max_memory,
                                       bool flag_given);

/// The sidecar of stats.json that holds the moment matrix: "<stem>.pixel-covariance.npy" beside
/// `stats_json` ("out/stats.json" → "out/stats.pixel-covariance.npy").
IMGNORM_API std::string pixel_covariance_path(const std::string& stats_json);

/// Checks, before allocating, that `accumulators` moment matrices of dimension D (and the
/// D×D matrices of a whitening fit) fit in `max_memory` bytes. Error(too_large) says how much is
/// needed and points at --mode zca-patch or zca-channels. `flag_given`: --max-memory was given
/// (else the message names the default).
IMGNORM_API void check_pixel_covariance_memory(std::uint64_t dimension, int accumulators,
                                               std::uint64_t max_memory, bool flag_given);

}  // namespace imgnorm
