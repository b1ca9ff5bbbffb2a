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
  /// Allocates the matrix ((D+1)² doubles) and the block buffers.
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
  /// Replaces the sums by `m` (as moments() returns it). Error(format) when it is not a moment
  /// matrix of whole images: not symmetric, not whole non-negative numbers, M[0][0] not the count,
  /// a sum beyond 255·n, a second moment beyond 255²·n.
  static PixelCovariance from_moments(std::size_t dimension, const std::vector<double>& m);

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
