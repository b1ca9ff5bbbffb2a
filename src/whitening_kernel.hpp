#pragma once
// The kernel of the full-image modes (zca, pca): Y = Z·Wᵀ for a batch of centred images, with one
// fixed sequence of operations per output element whatever the batch, its composition, the
// thread count or the output's position:
//
//     acc = 0; for j = 0 .. D−1: acc = fma(W[i][j], z[j], acc)
//
// The fast path (x86-64 with AVX2 and FMA, chosen at run time) keeps 4 batch rows × 12 outputs in
// 12 AVX2 accumulators and walks j in cache blocks, carrying each running sum from block to block
// through Y (a double stored and reloaded is the same double), so it gives the reference's bits.
// Elsewhere the reference loop runs (std::fma: a software fma on CPUs without FMA, correct but
// slow). docs/design.md "Applying the full-image whitening (issue 13)".

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/recipe.hpp"

namespace imgnorm {

class Normalizer;

namespace detail {

/// W (rows × dims, row-major) packed once into panels of 12 outputs: panel p holds, for each j,
/// W[12p .. 12p+11][j] side by side (rows past the end are 0). Thread-safe: run() is const.
class IMGNORM_API WhiteningKernel {
 public:
  static constexpr std::size_t kPanel = 12;   ///< outputs per panel (3 AVX2 vectors of doubles)
  static constexpr std::size_t kGroup = 4;    ///< batch rows per register tile
  static constexpr std::size_t kBlock = 256;  ///< values of j per cache block

  WhiteningKernel() = default;
  WhiteningKernel(const double* w, std::size_t rows, std::size_t dims);

  std::size_t rows() const { return rows_; }
  std::size_t dims() const { return dims_; }
  std::size_t panels() const { return panels_; }
  /// Row stride of Y: the rows rounded up to whole panels (the outputs past rows() are 0).
  std::size_t stride() const { return panels_ * kPanel; }
  /// Bytes of the packed matrix.
  std::size_t bytes() const { return packed_.size() * sizeof(double); }

  /// Z packed for the kernel: groups of 4 rows, each dims × 4 values (z[4g + m][j] at
  /// (g·dims + j)·4 + m), the last group padded with zeros. packed_size() doubles.
  static std::size_t packed_size(std::size_t batch, std::size_t dims) {
    return (batch + kGroup - 1) / kGroup * kGroup * dims;
  }
  /// Row b of Z (dims values) into its place in the packed Z.
  static void pack_row(const double* row, std::size_t b, std::size_t dims, double* zp) {
    double* g = zp + (b / kGroup) * kGroup * dims + b % kGroup;
    for (std::size_t j = 0; j < dims; ++j) g[j * kGroup] = row[j];
  }
  /// `batch` rows of Z (row-major) packed into zp (packed_size() doubles).
  static void pack_rows(const double* z, std::size_t batch, std::size_t dims, double* zp);

  /// Y (batch × stride(), row-major) = Z · Wᵀ for the outputs of panels [p0, p1), on the calling
  /// thread; `z` is Z packed (pack_rows). `portable` forces the portable loop (tests).
  void run_panels(const double* z, std::size_t batch, double* y, std::size_t p0, std::size_t p1,
                  bool portable = false) const;
  /// All panels on the calling thread (z packed).
  void run(const double* z, std::size_t batch, double* y, bool portable = false) const {
    run_panels(z, batch, y, 0, panels_, portable);
  }
  /// All panels, split over the threads of the calling TBB arena (tbb::parallel_for over panels);
  /// the same bits as run(). z packed.
  void run_parallel(const double* z, std::size_t batch, double* y) const;

  /// Whether run() takes the AVX2+FMA path on this CPU.
  static bool vectorized();

 private:
  std::size_t rows_ = 0, dims_ = 0, panels_ = 0;
  std::vector<double> packed_;
};

/// The reference: y[b·ldy + i] = (acc = 0; for j: acc = std::fma(w[i·dims + j], z[b·dims + j],
/// acc)) for b < batch, i < rows (z row-major, not packed).
IMGNORM_API void whitening_reference(const double* w, std::size_t rows, std::size_t dims,
                                     const double* z, std::size_t batch, double* y,
                                     std::size_t ldy);

/// The Normalizer's side of the full-image modes (its private members; transform.cpp).
struct IMGNORM_API FullImageAccess {
  static const WhiteningKernel& kernel(const Normalizer& n);
  /// z = x/255 − μ/255 (D values, HWC, input order) of a u8 image; checks its size against D.
  static void centre(const Normalizer& n, const ImageView& img, double* z);
  /// The same for doubles in 0–255 units (H×W×C, input order; apply_values checks finiteness).
  static void centre_values(const Normalizer& n, const double* values, int width, int height,
                            double* z);
  /// y (the kernel's outputs of one image) in the output layout, channel order and dtype.
  static void store(const Normalizer& n, const double* y, int width, int height, void* out);
};

/// A batch of images for the kernel: add() centres each into its row of Z, flush() runs the
/// kernel over the batch (run_parallel, in the calling arena) and hands each normalized row to
/// `write(i, row)` in the order added. The bits of a row do not depend on the batch it is in.
class IMGNORM_API FullImageBatch {
 public:
  /// Images per batch when memory allows: W (75 MB at D = 3072) is streamed from memory once per
  /// batch; at 128 the kernel runs at OpenBLAS dgemm's speed (16: 60% of it, 64: 90%).
  static constexpr std::size_t kDefaultCapacity = 128;

  FullImageBatch(const Normalizer& n, std::size_t capacity);
  /// Bytes one image takes in a batch (its row of Z and of Y).
  static std::size_t bytes_per_image(const Normalizer& n);
  /// The capacity for a budget of `bytes` (at least 1, at most kDefaultCapacity and `images`).
  static std::size_t capacity_for(const Normalizer& n, std::uint64_t bytes, std::size_t images);

  std::size_t size() const { return count_; }
  std::size_t capacity() const { return capacity_; }
  bool full() const { return count_ == capacity_; }

  void add(const ImageView& img);
  void add_values(const double* values, int width, int height);

  /// Runs the kernel and calls write(i, row) for i = 0 .. size()−1 (row: the output row, of the
  /// normalizer's dtype); empties the batch.
  template <typename Write>
  void flush(Write&& write) {
    if (count_ == 0) return;
    kernel_->run_parallel(z_.data(), count_, y_.data());
    for (std::size_t i = 0; i < count_; ++i) {
      FullImageAccess::store(*norm_, y_.data() + i * kernel_->stride(), sizes_[i].width,
                             sizes_[i].height, row_.data());
      write(i, static_cast<const void*>(row_.data()));
    }
    count_ = 0;
  }

 private:
  const Normalizer* norm_;
  const WhiteningKernel* kernel_;
  std::size_t capacity_, count_ = 0;
  std::vector<double> z_, y_;  // Z packed (WhiteningKernel::pack_row), Y
  std::vector<double> row_z_;  // one centred image before packing
  std::vector<Size> sizes_;
  std::vector<std::uint8_t> row_;
};

}  // namespace detail
}  // namespace imgnorm
